"""The openai backend: any OpenAI-compatible ``/v1/chat/completions`` server.

``vllm serve``, SGLang, ``llama_cpp.server``, or a hosted API: this is how rollouts scale past one
machine.  Several base URLs (comma-separated) are used round-robin; requests run on a bounded
thread pool; transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried with
exponential backoff (honouring ``Retry-After``), moving to the next URL; any other 4xx is a clear
:class:`ssb.errors.SsbError` at once.

The API key comes from ``api_key_env`` (the name of an environment variable),
``SSB_OPENAI_API_KEY``, ``OPENAI_API_KEY`` or the ``api_key`` option, in that order.  It is only
ever put in the ``Authorization`` header: never in a repr, an error message or a log line.

Sampling: the chat template is applied by the server (the served model's own).  ``n`` samples are
asked for in one request; servers that return fewer choices (``llama_cpp.server`` ignores ``n``)
get the rest as single requests, each with its own derived seed.  Non-standard sampling fields
depend on the server (``-B server=auto`` asks ``/v1/models`` who serves it):

- ``llama.cpp``: top_k (0 = off), min_p=0, repeat_penalty=1 (its defaults are 40, 0.05, 1.1);
- ``vllm`` / ``sglang``: top_k (-1 = off);
- ``openai``: only standard fields; a top_k other than 0 is refused.

``num_tokens`` is the server's ``usage.completion_tokens`` when a response holds one choice; with
several choices it is the length of each choice's ``logprobs`` (requested for that purpose), or,
if the server sends none, ``max_tokens`` for a "length" choice and the remaining usage split in
proportion to text length for the others (an estimate).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

from ssb.errors import SsbError
from ssb.records import Completion, Message, SamplingParams
from ssb.types import ProgressCallback

from ssb_backends.common import (check_conversations, check_options, check_params,
                                 conversation_key, derive_seed, finish_reason_of, repeat_greedy,
                                 require)

from ssb_backends import option_names  # noqa: E402

OPTIONS = option_names("openai")  # declared once, in the schema of ssb_backends
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
SERVERS = ("auto", "llama.cpp", "vllm", "sglang", "openai")
_OWNED_BY = {"me": "llama.cpp", "llamacpp": "llama.cpp", "llama.cpp": "llama.cpp",
             "vllm": "vllm", "sglang": "sglang"}


class OpenAICompatBackend:
    name = "openai"

    def __init__(self, model: str, adapter: str | None = None, *,
                 base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str | None = None, concurrency: int = 8, timeout: float = 600.0,
                 max_retries: int = 5, backoff: float = 1.0, server: str = "auto"):
        self._httpx = require("httpx", "openai", "openai")
        urls = base_url or os.environ.get("SSB_OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_urls = [u.strip().rstrip("/") for u in str(urls).split(",") if u.strip()]
        if not self.base_urls:
            raise SsbError("openai backend: base_url is empty")
        for u in self.base_urls:
            if not u.startswith(("http://", "https://")):
                raise SsbError(f"openai backend: base_url must start with http:// or https://, "
                               f"got {u!r}")
        if server not in SERVERS:
            raise SsbError(f"openai backend: server must be one of {', '.join(SERVERS)}, "
                           f"got {server!r}")
        if int(concurrency) < 1 or int(max_retries) < 0 or float(timeout) <= 0:
            raise SsbError("openai backend: concurrency >= 1, max_retries >= 0 and timeout > 0 "
                           "are required")
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        key = None
        if api_key_env:
            key = os.environ.get(str(api_key_env))
            if not key:
                raise SsbError(f"openai backend: environment variable {api_key_env} is not set")
        key = key or os.environ.get("SSB_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") \
            or (str(api_key) if api_key else None)
        self._secret = key
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = float(timeout)
        self._client = self._httpx.Client(
            timeout=self._httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=self._httpx.Limits(max_connections=self.concurrency * len(self.base_urls)),
            follow_redirects=False,
        )
        self._next_url = itertools.count()
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.requests_sent = 0  # every HTTP attempt, retries included (for tests and reports)
        # A served LoRA (vllm serve --lora-modules NAME=PATH) is addressed as its own model name.
        self.model = adapter or model
        self.server = server
        if server == "auto" or self.model in ("default", "auto"):
            served, owner = self._models()
            if server == "auto":
                self.server = _OWNED_BY.get(owner, "openai")
            if self.model in ("default", "auto"):
                if not served:
                    raise SsbError(f"openai backend: {self.base_urls[0]}/models lists no model")
                self.model = served[0]
        # Ask for n in one request until a response shows the server ignores n.
        self._n_supported = True

    def __repr__(self) -> str:  # never show the key
        return (f"OpenAICompatBackend(model={self.model!r}, base_urls={self.base_urls!r}, "
                f"server={self.server!r})")

    # -- the contract ------------------------------------------------------------------------
    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams,
                 progress: ProgressCallback | None = None) -> list[list[Completion]]:
        check_params(params)
        check_conversations(conversations)
        if self.server == "openai" and params.top_k:
            raise SsbError("openai backend: this server takes only standard OpenAI fields and "
                           "has no top_k; use top_k=0 or -B server=vllm|sglang|llama.cpp")
        greedy = params.temperature == 0
        want = 1 if greedy else params.n
        keys = [conversation_key(c) for c in conversations]
        got: list[list[Completion]] = [[] for _ in conversations]
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="ssb-openai") as pool:
            # Round 1: n per request (or n single requests once the server is known to ignore n).
            # Round 2: whatever a server that ignores n left short, one seed per sample.
            for _round in range(2):
                jobs: list[tuple[int, Future]] = []
                for i, conv in enumerate(conversations):
                    missing = want - len(got[i])
                    if missing <= 0:
                        continue
                    if self._n_supported and not got[i]:
                        seeds = [(want, derive_seed(params.seed, keys[i], 0))]
                    else:
                        seeds = [(1, derive_seed(params.seed, keys[i], j))
                                 for j in range(len(got[i]), want)]
                    for n, seed in seeds:
                        jobs.append((i, pool.submit(self._sample, conv, params, n, seed)))
                for i, fut in jobs:
                    try:
                        completions = fut.result()
                    except BaseException:
                        for _, other in jobs:
                            other.cancel()
                        raise
                    room = want - len(got[i])
                    got[i].extend(completions[:room])
                    if progress is not None and completions[:room]:
                        progress(len(completions[:room]) * (params.n if greedy else 1))
                if all(len(g) >= want for g in got):
                    break
        if any(len(g) < want for g in got):
            raise SsbError(f"openai backend: {self.base_urls[0]} returned fewer choices than "
                           "asked even for single requests")
        return [repeat_greedy(g[0], params.n) if greedy else g for g in got]

    def close(self) -> None:
        self._client.close()

    # -- HTTP --------------------------------------------------------------------------------
    def _body(self, conv: Sequence[Message], params: SamplingParams, n: int,
              seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "messages": [dict(m) for m in conv], "n": n,
            "temperature": params.temperature, "top_p": params.top_p,
            "max_tokens": params.max_new_tokens, "seed": seed, "stream": False,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if n > 1:
            body["logprobs"] = True  # per-choice token counts (usage only has the total)
        if self.server == "llama.cpp":
            body.update(top_k=params.top_k, min_p=0.0, repeat_penalty=1.0)
        elif self.server in ("vllm", "sglang"):
            body.update(top_k=params.top_k if params.top_k > 0 else -1)
        return body

    def _sample(self, conv: Sequence[Message], params: SamplingParams, n: int,
                seed: int) -> list[Completion]:
        data = self._post("/chat/completions", self._body(conv, params, n, seed))
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            usage = int((data.get("usage") or {}).get("completion_tokens") or 0)
            texts = [(c.get("message") or {}).get("content") or "" for c in choices]
            reasons = [finish_reason_of(c.get("finish_reason")) for c in choices]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SsbError(f"openai backend: malformed response ({type(exc).__name__}: {exc})") \
                from None
        if not choices:
            raise SsbError("openai backend: the server returned no choices")
        if n > 1 and len(choices) < n:
            self._n_supported = False  # e.g. llama_cpp.server: the rest come as single requests
        counts = _token_counts(choices, texts, reasons, usage, params.max_new_tokens)
        return [Completion(t, k, r) for t, k, r in zip(texts, counts, reasons)]

    def _models(self) -> tuple[list[str], str]:
        data = self._request("GET", "/models", None)
        try:
            entries = data.get("data") or []
            return [e["id"] for e in entries], str(entries[0].get("owned_by", "")) \
                if entries else ""
        except (AttributeError, KeyError, TypeError):
            return [], ""

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        httpx = self._httpx
        last = ""
        url = ""
        for attempt in range(self.max_retries + 1):
            with self._lock:
                url = self.base_urls[next(self._next_url) % len(self.base_urls)] + path
                self.requests_sent += 1
            retry_after = None
            try:
                response = self._client.request(method, url, json=body, headers=self._headers)
            except httpx.TransportError as exc:  # refused, reset, DNS, timeouts
                last = f"{type(exc).__name__}: {exc}"
            else:
                code = response.status_code
                if code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        last = "HTTP 200 with a body that is not JSON"
                elif code == 429 or code >= 500:
                    last = f"HTTP {code}: {self._short(response)}"
                    retry_after = _retry_after(response)
                else:
                    raise SsbError(f"openai backend: {method} {url} answered HTTP {code}: "
                                   f"{self._short(response)}")
            if attempt < self.max_retries:
                delay = min(self.backoff * 2 ** attempt, 60.0) * self._rng.uniform(0.5, 1.0)
                time.sleep(retry_after if retry_after is not None else delay)
        raise SsbError(f"openai backend: {method} {url} failed after {self.max_retries + 1} "
                       f"attempt(s): {self._scrub(last)}")

    def _short(self, response) -> str:
        """The server's error message (untrusted text), short and with the key scrubbed."""
        try:
            data = response.json()
            err = data.get("error", data) if isinstance(data, dict) else data
            msg = err.get("message", err) if isinstance(err, dict) else err
            text = str(msg)
        except ValueError:
            text = response.text
        text = " ".join(text.split())
        return self._scrub(text[:300] + ("..." if len(text) > 300 else ""))

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), 60.0) if value is not None else None
    except ValueError:
        return None


def _token_counts(choices: list[dict], texts: list[str], reasons: list[str], usage: int,
                  max_tokens: int) -> list[int]:
    if len(choices) == 1:
        return [usage]
    counts: list[int | None] = []
    for c in choices:
        content = (c.get("logprobs") or {}).get("content") if isinstance(c.get("logprobs"),
                                                                        dict) else None
        counts.append(len(content) if isinstance(content, list) else None)
    if all(k is not None for k in counts):
        return [int(k) for k in counts]  # type: ignore[arg-type]
    # No per-choice counts: a spent budget is max_tokens; split the rest by text length.
    fixed = sum(max_tokens for r in reasons if r == "length")
    rest = max(usage - fixed, 0)
    free_chars = sum(len(t) for t, r in zip(texts, reasons) if r != "length") or 1
    return [max_tokens if r == "length" else round(rest * len(t) / free_chars)
            for t, r in zip(texts, reasons)]


def create(model: str, adapter: str | None = None, **options: Any) -> OpenAICompatBackend:
    check_options("openai", options, OPTIONS)
    return OpenAICompatBackend(model, adapter, **options)
