"""Shared fixtures: the real data in ../shared/data, a tiny random model, the real small model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SSB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Tests see this repository's plugins only: a plugin that happens to be installed in the
# environment must not change what a test checks.  A test that installs a plugin allows it
# (allowed_env / the replay_plugin fixture).
FIRST_PARTY_PLUGINS = ("gsm8k", "math", "backends", "arithmetic", "code", "science")
os.environ["SSB_LOAD_PLUGINS"] = ",".join(FIRST_PARTY_PLUGINS)


def entry_names(site: Path) -> list[str]:
    """The ``ssb`` entry-point names of the distributions installed under ``site``."""
    names = []
    for ep_file in Path(site).glob("*.dist-info/entry_points.txt"):
        section = None
        for line in ep_file.read_text().splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "ssb" and "=" in line:
                names.append(line.split("=", 1)[0].strip())
    return names


def allowed_env(site: Path, env: dict | None = None) -> dict:
    """An environment whose allow-list also loads the plugins installed under ``site``."""
    env = dict(os.environ if env is None else env)
    current = [n for n in env.get("SSB_LOAD_PLUGINS", "").split(",") if n]
    env["SSB_LOAD_PLUGINS"] = ",".join(current + entry_names(site))
    return env


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The byte-exact benchmark copies (GSM8K, MATH-500, AIME24, AMC23); read in place."""
    if not (SHARED_DATA / "gsm8k" / "train.jsonl").exists():
        pytest.fail(f"shared data not found at {SHARED_DATA} (set SSB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight Qwen2 model + ChatML BPE tokenizer, built once per session (~seconds)."""
    from ssb.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def small_gguf() -> Path:
    """The real small model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), assembled and sha256-checked."""
    from ssb.models import default_gguf

    return default_gguf()


@pytest.fixture
def ssb_cli(monkeypatch):
    """Run the CLI in-process: returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from ssb.cli import build_app

    def run(*args: str, input: str | None = None):
        runner = CliRunner()
        result = runner.invoke(build_app(), list(args), input=input, catch_exceptions=True)
        code = result.exit_code
        exc = result.exception
        from ssb.errors import SsbError

        if isinstance(exc, SsbError):
            code = exc.exit_code
            return code, result.stdout, str(exc)
        if exc is not None and not isinstance(exc, SystemExit):
            raise exc
        return code, result.stdout, result.stderr

    return run


def have_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


# Dependencies scripts/setup.sh installs (the README's environment).  Under CI=true a test that
# would skip for want of one FAILS instead: a broken install must not pass as a green run.
# vLLM is not among them: it lives in its own environment (scripts/setup_vllm.sh).
CI_REQUIRED_MODULES = ("llama_cpp", "uvicorn", "fastapi", "httpx")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or call.excinfo is None or not in_ci():
        return
    import re

    message = str(call.excinfo.value)
    missing = re.match(r"could not import '([\w.]+)'", message)
    if missing and missing.group(1).split(".")[0] in CI_REQUIRED_MODULES:
        report.outcome = "failed"
        report.longrepr = (f"CI=true: {missing.group(1)} is installed by scripts/setup.sh, so "
                           f"this test must run, not skip ({message})")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def which(cmd: str) -> str | None:
    return shutil.which(cmd)


@pytest.fixture(scope="session")
def replay_plugin(tmp_path_factory) -> Path:
    """The test-only ``ssb-replay`` plugin (tests/plugins/ssb_replay: ``replay`` and ``record``
    backends), installed for real into a temporary target dir so it is found through the ``ssb``
    entry-point group like any third-party plugin.  Returns that dir: put it on ``PYTHONPATH``
    for subprocesses; in-process it is on ``sys.path`` for the session."""
    import subprocess
    import sys

    from ssb.plugins import get_registry

    target = tmp_path_factory.mktemp("ssb-replay-site")
    source = tmp_path_factory.mktemp("ssb-replay-src") / "ssb_replay"  # builds leave files behind
    shutil.copytree(REPO_ROOT / "tests" / "plugins" / "ssb_replay", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True,
    )
    sys.path.insert(0, str(target))
    before = os.environ["SSB_LOAD_PLUGINS"]
    os.environ["SSB_LOAD_PLUGINS"] = allowed_env(target)["SSB_LOAD_PLUGINS"]
    get_registry(refresh=True)
    yield target
    sys.path.remove(str(target))
    os.environ["SSB_LOAD_PLUGINS"] = before
    get_registry(refresh=True)


@pytest.fixture(scope="session")
def coinflip_path(tmp_path_factory) -> Path:
    """The test-only ``coinflip`` domain (tests/plugins/ssb_coinflip.py) installed as a real
    distribution: the tiny model "solves" half of its problems, so every stage runs."""
    from ssb.testing import install_plugin_module

    root = tmp_path_factory.mktemp("coinflip-site")
    source = (REPO_ROOT / "tests" / "plugins" / "ssb_coinflip.py").read_text()
    return install_plugin_module(root, "ssb-coinflip", "coinflip", "ssb_coinflip", source)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plugin_env(plugin_site: Path) -> dict:
    """An environment in which a child Python imports and allows the plugins under
    ``plugin_site``."""
    env = allowed_env(plugin_site)
    env["PYTHONPATH"] = f"{plugin_site}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def ssb_subprocess(command: str, args: list[str], plugin_site: Path, **kwargs):
    """``python -m ssb COMMAND ARGS`` in its own session (killable as a group), with the plugins
    under ``plugin_site`` importable and allowed."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "ssb", command, *args],
                            env=plugin_env(plugin_site),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)


# -- the real-vLLM tests (tests/vllm_engine) -----------------------------------------------------
# Their fixture lives here, not in a tests/vllm_engine/conftest.py: a second conftest module would
# shadow this one for the tests that `from conftest import ...` (ssb_subprocess, plugin_env).

@pytest.fixture(scope="session")
def vllm_tiny(tmp_path_factory):
    """A random-weight Qwen2 whose head_dim is 64: vLLM's CPU attention has no kernel for
    ssb.testing's default head_dim of 16."""
    from ssb.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("vllm-tiny"), hidden_size=128, num_heads=2)
