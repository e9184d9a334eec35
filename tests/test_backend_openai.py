"""The openai backend against a REAL `python -m llama_cpp.server` on loopback with the real small
model, plus a small loopback proxy that injects failures (503s, 429s, echoed secrets) and counts
what it sees."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port

from ssb.errors import SsbError
from ssb.plugins import get_registry
from ssb.records import SamplingParams

pytestmark = pytest.mark.llama

SECRET = "sk-test-7f3a9c-not-a-real-key"
CONVS = [
    [{"role": "system", "content": "You are a helpful math tutor. Answer briefly."},
     {"role": "user", "content": "What is 7 * 8?"}],
    [{"role": "user", "content": "Name one prime number greater than 10."}],
    [{"role": "user", "content": "What is 10 + 5? Answer with the number only."}],
]


@pytest.fixture(scope="module")
def llama_server(small_gguf, tmp_path_factory):
    """`python -m llama_cpp.server` on loopback, protected by an API key."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    port = free_port()
    # The server logs ~170 kB while loading: a file, not a pipe nobody drains.
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(small_gguf),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
         "--api_key", SECRET],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
            try:
                r = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {SECRET}"},
                              timeout=2)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail("llama_cpp.server did not come up in 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Proxy:
    """A loopback HTTP proxy in front of the real server: fails the first ``fail`` POSTs with
    ``status`` (503/429/400...), counts requests and the most requests it ever had in flight."""

    def __init__(self, upstream: str, fail: int = 0, status: int = 503, echo_auth: bool = False):
        import httpx

        self.upstream, self.fail, self.status, self.echo_auth = upstream, fail, status, echo_auth
        self.posts = self.gets = self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=300)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code, body: bytes, headers=None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with proxy.lock:
                    proxy.gets += 1
                r = proxy.client.get(proxy.upstream + self.path[len("/v1"):],
                                     headers={"Authorization": self.headers.get("Authorization",
                                                                                "")})
                self._send(r.status_code, r.content)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    proxy.posts += 1
                    failing = proxy.posts <= proxy.fail
                    proxy.inflight += 1
                    proxy.max_inflight = max(proxy.max_inflight, proxy.inflight)
                try:
                    if failing:
                        msg = "overloaded"
                        if proxy.echo_auth:  # a careless server that echoes the credentials
                            msg = f"bad request from {self.headers.get('Authorization')}"
                        extra = {"Retry-After": "0"} if proxy.status == 429 else {}
                        self._send(proxy.status, json.dumps({"error": {"message": msg}}).encode(),
                                   extra)
                        return
                    r = proxy.client.post(
                        proxy.upstream + self.path[len("/v1"):], content=body,
                        headers={"Authorization": self.headers.get("Authorization", ""),
                                 "Content-Type": "application/json"})
                    self._send(r.status_code, r.content)
                finally:
                    with proxy.lock:
                        proxy.inflight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("SSB_OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _backend(url, **opts):
    return get_registry().backend("openai").create("default", base_url=url, **opts)


def _texts(result):
    return [[c.text for c in per] for per in result]


def test_batch_generation_through_the_server(llama_server, keyed):
    b = _backend(llama_server, concurrency=2)
    assert b.server == "llama.cpp"  # detected from /v1/models (owned_by "me")
    res = b.generate(CONVS, SamplingParams(n=2, temperature=0.0, max_new_tokens=24))
    assert len(res) == 3 and all(len(per) == 2 for per in res)
    assert "56" in res[0][0].text and res[0][0].text == res[0][1].text
    assert "15" in res[2][0].text
    c = res[0][0]
    assert c.finish_reason == "stop" and 0 < c.num_tokens < 24
    short = b.generate([CONVS[1]], SamplingParams(max_new_tokens=3))[0][0]
    assert short.finish_reason == "length" and short.num_tokens == 3
    b.close()


def test_n_samples_fall_back_to_seeded_single_requests(llama_server, keyed):
    """llama_cpp.server ignores n: the backend asks once, sees one choice, fetches the rest as
    single requests with derived seeds, and asks singly from then on.

    llama_cpp.server reuses its prompt cache across requests and a cached prompt gives slightly
    different logits than a fresh one, so a one-token greedy request on the same conversation
    puts the server's cache in the same state before each seeded call.
    """
    proxy = Proxy(llama_server)
    try:
        b = _backend(proxy.url, concurrency=1)
        params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=16, seed=5)
        warm = SamplingParams(max_new_tokens=1)
        seen = []
        b.generate([CONVS[0]], warm)
        posts = proxy.posts
        first = b.generate([CONVS[0]], params, progress=seen.append)
        assert len(first[0]) == 3 and sum(seen) == 3
        assert len(set(_texts(first)[0])) > 1  # distinct seeds, distinct samples
        assert proxy.posts - posts == 3  # one n=3 request answered with 1 choice + 2 singles
        b.generate([CONVS[0]], warm)
        posts = proxy.posts
        again = b.generate([CONVS[0]], params)
        assert proxy.posts - posts == 3  # now known: 3 single requests
        assert _texts(again) == _texts(first)
        other = b.generate([CONVS[0]], SamplingParams(**{**params.to_dict(), "seed": 6}))
        assert _texts(other) != _texts(first)
        b.close()
    finally:
        proxy.close()


def test_retries_on_503_and_429_then_succeeds(llama_server, keyed):
    for status in (503, 429):
        proxy = Proxy(llama_server, fail=2, status=status)
        try:
            b = _backend(proxy.url, max_retries=3, backoff=0.01)
            res = b.generate([CONVS[0]], SamplingParams(max_new_tokens=16))
            assert "56" in res[0][0].text
            assert proxy.posts == 3  # two failures, one success
            b.close()
        finally:
            proxy.close()


def test_gives_up_with_a_clear_error(llama_server, keyed):
    proxy = Proxy(llama_server, fail=100, status=503)
    try:
        b = _backend(proxy.url, max_retries=2, backoff=0.01)
        with pytest.raises(SsbError, match=r"failed after 3 attempt\(s\): HTTP 503: overloaded"):
            b.generate([CONVS[0]], SamplingParams(max_new_tokens=4))
        assert proxy.posts == 3
    finally:
        proxy.close()
    closed = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.time()
    with pytest.raises(SsbError, match=r"failed after 3 attempt\(s\): ConnectError"):
        _backend(closed, max_retries=2, backoff=0.01)
    assert time.time() - t0 < 10


def test_4xx_is_an_immediate_clear_error(llama_server, monkeypatch):
    monkeypatch.setenv("SSB_OPENAI_API_KEY", "sk-wrong-key-123456")
    proxy = Proxy(llama_server)
    try:
        with pytest.raises(SsbError, match="HTTP 401") as err:
            _backend(proxy.url, max_retries=5, backoff=0.01)
        assert "sk-wrong-key-123456" not in str(err.value)
        assert proxy.gets == 1  # no retry on a client error
    finally:
        proxy.close()


def test_api_key_never_leaks(llama_server, keyed, ssb_cli, monkeypatch):
    proxy = Proxy(llama_server, fail=1, status=400, echo_auth=True)
    try:
        b = _backend(proxy.url, concurrency=1)
        assert SECRET not in repr(b) and SECRET not in str(vars(b).get("base_urls"))
        with pytest.raises(SsbError) as err:
            b.generate([CONVS[0]], SamplingParams(max_new_tokens=4))
        assert "HTTP 400" in str(err.value) and "***" in str(err.value)
        assert SECRET not in str(err.value)
        b.close()
    finally:
        proxy.close()
    # The key as a flag: the command output and the manifest-style config never contain it.
    monkeypatch.delenv("SSB_OPENAI_API_KEY")
    code, out, err = ssb_cli("generate", "--backend", "openai", "--prompt", "What is 7 * 8?",
                             "--max-tokens", "12", "--json", "-B", f"base_url={llama_server}",
                             "-B", f"api_key={SECRET}")
    assert code == 0, err
    assert "56" in json.loads(out.strip().splitlines()[-1])["completions"][0]["text"]
    assert SECRET not in out and SECRET not in (err or "")
    from ssb.secrets import redact

    assert SECRET not in json.dumps(redact({"backend_opt": [f"api_key={SECRET}"]}))


def test_round_robin_and_bounded_concurrency(llama_server, keyed):
    a, b_ = Proxy(llama_server), Proxy(llama_server)
    try:
        b = _backend(f"{a.url},{b_.url}", concurrency=2)
        convs = [[{"role": "user", "content": f"What is {i} + {i}? Number only."}]
                 for i in range(6)]
        res = b.generate(convs, SamplingParams(max_new_tokens=6))
        assert len(res) == 6
        assert a.posts > 0 and b_.posts > 0 and a.posts + b_.posts == 6
        assert max(a.max_inflight, b_.max_inflight) <= 2
        b.close()
    finally:
        a.close()
        b_.close()


def test_bad_options_are_clear_errors(keyed):
    factory = get_registry().backend("openai")
    with pytest.raises(SsbError, match="unknown option"):
        factory.create("m", base_url="http://127.0.0.1:1/v1", n_threads=2)
    with pytest.raises(SsbError, match="http:// or https://"):
        factory.create("m", base_url="127.0.0.1:8000")
    with pytest.raises(SsbError, match="server must be one of"):
        factory.create("m", base_url="http://127.0.0.1:1/v1", server="tgi")
    with pytest.raises(SsbError, match="NOPE_KEY_VAR is not set"):
        factory.create("m", base_url="http://127.0.0.1:1/v1", server="openai",
                       api_key_env="NOPE_KEY_VAR")
