"""Writes never land outside the output directory (issue 21).

Before:

* ``ssb export --gguf`` renamed its file over whatever the path named: a device node or a FIFO
  became a regular file (as root);
* ``ssb eval --out ""`` read the empty path as the working directory and overwrote an unrelated
  ``results.jsonl`` there (typer turns ``""`` into ``Path("")``, which is ``.``);
* ``ssb run --curate out=/elsewhere`` made curate write outside the run's tree, and the empty
  ``run/curate`` was then marked complete.

Each is now refused in one ``error:`` line, exit 2, before anything is written.  Real processes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from test_export import _random_lora


def _ssb(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, \
        (proc.returncode, proc.stderr)
    assert lines[0].startswith("error: "), lines
    return lines[0]


def _targets(tmp_path: Path) -> dict[str, tuple[Path, int]]:
    """A FIFO, a symlink, and (as root) a character device node, each with its file type."""
    made = {}
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)
    made["a FIFO"] = (fifo, stat.S_IFIFO)
    link = tmp_path / "link.gguf"
    (tmp_path / "elsewhere.gguf").write_bytes(b"not yours")
    link.symlink_to(tmp_path / "elsewhere.gguf")
    made["a symlink"] = (link, stat.S_IFLNK)
    if os.geteuid() == 0:
        node = tmp_path / "node.gguf"
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # the same numbers as /dev/null
        made["a device node"] = (node, stat.S_IFCHR)
    return made


def test_export_refuses_a_target_that_is_not_a_regular_file(tiny_model_dir, tmp_path):
    adapter = tmp_path / "adapter"
    _random_lora(str(tiny_model_dir), adapter)
    targets = _targets(tmp_path)
    if "a device node" not in targets:
        pytest.skip("not root: no device node to probe (the FIFO and symlink cases still ran)")
    for kind, (path, ftype) in targets.items():
        proc = _ssb("export", "--adapter", str(adapter), "--gguf", str(path),
                    "--base", str(tiny_model_dir))
        assert _one_error_line(proc) == (
            f"error: GGUF output {path} is {kind}; name a new path or a regular file to "
            "replace"), kind
        assert stat.S_IFMT(os.lstat(path).st_mode) == ftype, kind  # left as it was
    assert (tmp_path / "elsewhere.gguf").read_bytes() == b"not yours"
    assert not list(tmp_path.glob(".*.tmp"))
    # A new path and an existing regular file are written as before.
    for path in (tmp_path / "new.gguf", tmp_path / "elsewhere.gguf"):
        proc = _ssb("export", "--adapter", str(adapter), "--gguf", str(path),
                    "--base", str(tiny_model_dir))
        assert proc.returncode == 0, proc.stderr
        assert path.read_bytes()[:4] == b"GGUF"


@pytest.mark.parametrize("command", ["eval", "curate"])
def test_an_empty_out_is_refused_and_the_working_directory_untouched(command, tiny_model_dir,
                                                                      tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "results.jsonl").write_text("someone else's results\n")
    args = (["eval", "--dataset", "arithmetic"] if command == "eval" else
            ["curate", "--domain", "arithmetic", "--rollouts", "2"])
    proc = _ssb(*args, "--backend", "transformers", "--model", str(tiny_model_dir), "--limit",
                "1", "--max-tokens", "4", "--out", "", "--no-progress", cwd=cwd)
    assert _one_error_line(proc) == "error: command line: --out is empty; name a path"
    assert sorted(p.name for p in cwd.iterdir()) == ["results.jsonl"]
    assert (cwd / "results.jsonl").read_text() == "someone else's results\n"


def test_run_refuses_a_stage_out_that_leaves_its_tree(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    out = tmp_path / "run"
    for flag in ("--curate", "--evaluate", "--distill"):
        proc = _ssb("run", "--domain", "arithmetic", "--limit", "2", "--backend", "transformers",
                    "--model", "unused", "--out", str(out), flag, f"out={elsewhere}",
                    "--no-progress")
        table = flag[2:]
        assert _one_error_line(proc) == (
            f"error: ssb run: [{table}] out: each stage writes under the run's --out; "
            "remove it"), proc.stderr
        assert not elsewhere.exists() and not out.exists()
