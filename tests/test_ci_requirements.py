"""Under CI=true, a test that skips because a dependency of the README's environment is missing
fails the run instead (tests/conftest.py); vLLM, a separate environment, may still skip."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT

TESTS = '''
import sys
import pytest

def test_needs_uvicorn():
    sys.modules["uvicorn"] = None  # as if it were not installed: import raises ImportError
    pytest.importorskip("uvicorn")

def test_needs_llama_cpp_submodule():
    sys.modules["llama_cpp.llama"] = None
    pytest.importorskip("llama_cpp.llama")

def test_needs_vllm():
    sys.modules["vllm"] = None
    pytest.importorskip("vllm")
'''


def _pytest(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_missing.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    # The repository's conftest as a plugin, by module name: the same hook CI runs under.
    env["PYTHONPATH"] = f"{REPO_ROOT / 'tests'}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "conftest",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_missing.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_missing_setup_dependency_fails_under_ci(tmp_path):
    proc = _pytest(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed, 1 skipped" in proc.stdout
    assert "CI=true: uvicorn is installed by scripts/setup.sh" in proc.stdout
    assert "CI=true: llama_cpp.llama is installed by scripts/setup.sh" in proc.stdout


def test_missing_dependency_skips_outside_ci(tmp_path):
    proc = _pytest(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 skipped" in proc.stdout
