"""Secrets never leave the process: an API key given as a backend option, in any case, and
credentials inside a URL appear in no file and no log line of a full `ssb run`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "sk-TOPSECRET-4242"
URL_SECRET = "hunter2-url-password"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block exits: nothing listens


def _grep_tree(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


@pytest.mark.slow
def test_full_run_against_a_closed_port_leaks_no_secret(tmp_path):
    port = _closed_port()
    out = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(f"""
domain = "arithmetic"
backend = "openai"
model = "served-model"
limit = 2
eval-limit = 2
backend-options = {{ api_key = "{SECRET}", base_url = "http://user:{URL_SECRET}@127.0.0.1:{port}/v1", max_retries = 0, timeout = 2.0 }}

[curate]
max-errors = 5
""")
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "ssb", "run", "--config", str(config), "--out",
                           str(out), "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode != 0  # nothing listens: the stage fails, the secrets must not leak
    assert "error" in proc.stderr.lower()
    for needle in (SECRET, URL_SECRET):
        assert needle not in proc.stdout and needle not in proc.stderr, needle
        assert _grep_tree(tmp_path / "run", needle) == [], needle
    # It did write files (the run's manifest, curate's outputs; curate's own manifest is removed
    # because the backend never loaded) -- all redacted, and the error line names the URL with
    # its credentials masked.
    assert (out / "manifest.json").exists() and (out / "curate").is_dir()
    assert "<redacted>" in (out / "manifest.json").read_text()
    assert "http://<redacted>@127.0.0.1" in proc.stderr


def test_wrong_case_key_is_refused_before_any_file_is_written(tmp_path, ssb_cli):
    out = tmp_path / "c"
    code, _, err = ssb_cli("curate", "--domain", "arithmetic", "--backend", "openai", "--model",
                           "m", "--out", str(out), "-B", f"API_KEY={SECRET}")
    assert code == 2 and "use api_key=" in err and SECRET not in err
    assert not out.exists() or not any(out.iterdir())


# -- issue 21: a password with '@', and library messages that mangle the URL ---------------------

AT_SECRET = "XYZW16-after-the-at"


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _assert_nowhere(needle: str, proc: subprocess.CompletedProcess, *roots: Path) -> None:
    assert needle not in proc.stdout and needle not in proc.stderr, proc.stderr
    for root in roots:
        if root.exists():
            assert _grep_tree(root, needle) == [], needle


def test_a_url_password_holding_an_at_sign_is_masked_in_every_command(tmp_path):
    """HTTP clients read the user-info up to the LAST '@' before the host: with
    ``http://u:SEK@XYZW16@host``, the password is ``SEK@XYZW16``.  Cutting at the first '@' left
    ``XYZW16`` in stderr, manifest.json and journal.jsonl of curate, generate and eval."""
    port = _closed_port()
    url = f"http://u:SEK@{AT_SECRET}@127.0.0.1:{port}/v1"
    backend = ["--backend", "openai", "--model", "served-model", "-B", f"base_url={url}",
               "-B", "max_retries=0", "-B", "timeout=2"]
    curate = _run("curate", "--domain", "arithmetic", "--limit", "2", "--max-errors", "5",
                  "--out", str(tmp_path / "curate"), *backend, "--no-progress")
    evaluate = _run("eval", "--dataset", "arithmetic", "--limit", "2",
                    "--out", str(tmp_path / "eval"), *backend, "--no-progress")
    generate = _run("generate", "--prompt", "What is 2+3?", *backend)
    run = _run("run", "--domain", "arithmetic", "--limit", "2", "--eval-limit", "2",
               "--out", str(tmp_path / "run"), *backend, "--no-progress")
    for proc in (curate, evaluate, generate, run):
        assert proc.returncode != 0, proc.stderr  # nothing listens
        _assert_nowhere(AT_SECRET, proc, tmp_path)
        _assert_nowhere("SEK@", proc, tmp_path)
        # the error line shows where the request went, its credentials masked
        assert f"http://<redacted>@127.0.0.1:{port}" in proc.stderr, proc.stderr
    # Files were written (the run's manifest records the URL), all masked.
    assert f"http://<redacted>@127.0.0.1:{port}" in (tmp_path / "run" / "manifest.json").read_text()


def test_a_source_url_password_is_masked_after_a_library_mangles_the_url(tmp_path,
                                                                          tiny_model_dir):
    """``datasets`` reports ``https://user:PASS@host/x`` as ``https:/user:PASS@host/x``, which
    no URL pattern of ours matched.  The password is remembered from the command line and masked
    in every line the process prints, whatever shape the text around it has."""
    port = _closed_port()
    secret = "hunter2-source-password"
    source = f"https://someone:{secret}@127.0.0.1:{port}/data/train.jsonl"
    proc = _run("curate", "--domain", "gsm8k", "--source", source, "--backend", "transformers",
                "--model", str(tiny_model_dir), "--limit", "1", "--out", str(tmp_path / "c"),
                "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    _assert_nowhere(secret, proc, tmp_path / "c")


def test_a_server_that_echoes_the_credentials_cannot_leak_them(tmp_path):
    """No URL shape is left to match when a server echoes the decoded credentials in its error
    message (``bad credentials someone:PASS``).  The password was learned from the command line,
    so the value itself is masked in the error line and everywhere else."""
    import base64
    import http.server
    import threading

    secret = "echoed-pass-7731"

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's spelling
            auth = self.headers.get("Authorization", "")
            who = base64.b64decode(auth.split()[-1]).decode() if auth.startswith("Basic") else ""
            body = ('{"error": {"message": "bad credentials %s"}}' % who).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://someone:{secret}@127.0.0.1:{server.server_address[1]}/v1"
        proc = _run("generate", "--prompt", "What is 2+3?", "--backend", "openai", "--model",
                    "served-model", "-B", f"base_url={url}", "-B", "max_retries=0")
    finally:
        server.shutdown()
    assert proc.returncode == 2, proc.stderr
    assert "answered HTTP 401: bad credentials someone:<redacted>" in proc.stderr, proc.stderr
    _assert_nowhere(secret, proc)
