"""Secrets never leave the process: an API key given as a backend option, in any case, and
credentials inside a URL appear in no file and no log line of a full `ssb run`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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
