"""Helpers of the real-vLLM tests (see conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SKIP_REASON = ("vllm is not importable here; run these under .venv-vllm "
               "(bash scripts/setup.sh --vllm)")
# Small, fast and exact: fp32 (comparable with the transformers backend), no torch.compile,
# a 1 GiB KV cache.
TINY_OPTS = ["-B", "dtype=float32", "-B", "enforce_eager=true", "-B", "kv_cache_space=1",
             "-B", "max_model_len=1024"]
TINY_KW = dict(dtype="float32", enforce_eager=True, kv_cache_space=1, max_model_len=1024)


def run_ssb(*args: str, timeout: float = 900, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m ssb ARGS`` in this environment, output captured (text)."""
    return subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or dict(os.environ), cwd=cwd)
