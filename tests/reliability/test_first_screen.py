"""The first screen is ssb's own (issue 13).

Before, a fresh ``scripts/demo.sh`` opened with dozens of setuptools warnings per package
(``project.license`` as a TOML table) and every stage added transformers FutureWarnings
(``is_gradient_checkpointing``), "Loading weights" bars and generation-flag warnings.  The causes
are fixed: SPDX license strings; the deprecated attribute silenced at its source in
``ssb.models`` (peft's call, not ours); transformers' bars off; greedy generation spelled the way
transformers expects.  ``scripts/setup.sh`` sends pip's own chatter to ``.venv/setup.log``.

Checked here: every distribution in the repository declares an SPDX license string, and the
stderr of a real ``ssb distill`` and ``ssb eval`` on the tiny model, without a terminal, holds
only ssb's own lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from test_alignment import make_record, write_curated

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = re.compile(r"^(\[(distill|eval arithmetic)\] \d+/\d+ |adapter: |results: )")
NOISE = re.compile(r"warn|Loading weights|it/s\]|Traceback", re.IGNORECASE)


def test_every_distribution_declares_an_spdx_license_string():
    files = [p for p in REPO.rglob("pyproject.toml")
             if not {".venv", "build", "node_modules"} & set(p.parts)]
    assert len(files) >= 6, files
    for path in files:
        project = tomllib.loads(path.read_text())["project"]
        if "license" in project:  # a table is what made setuptools warn on every install
            assert isinstance(project["license"], str), path
        assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")], path


def _stderr_lines(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.slow
def test_stages_print_no_library_warnings(tiny_model_dir, tmp_path):
    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(4)])
    distill = _stderr_lines("distill", "--curated", str(curated), "--model", str(tiny_model_dir),
                            "--out", str(tmp_path / "distill"), "--lora-r", "4",
                            "--lora-alpha", "8", "--max-length", "256", "--batch-size", "2",
                            "--max-steps", "2")
    evaluate = _stderr_lines("eval", "--dataset", "arithmetic", "--backend", "transformers",
                             "--model", str(tiny_model_dir), "--adapter",
                             str(tmp_path / "distill" / "adapter"), "--limit", "2",
                             "--max-tokens", "8", "--out", str(tmp_path / "eval"))
    for lines in (distill, evaluate):
        assert lines, "a stage without a terminal still reports progress"
        assert [line for line in lines if NOISE.search(line)] == [], lines
        assert [line for line in lines if not OURS.match(line)] == [], lines
