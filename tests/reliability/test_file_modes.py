"""Every file ssb writes gets the same permissions: ``0o666`` less the umask, as ``open()``
gives (issue 21).

Before, files written atomically through ``mkstemp`` (results, summaries, reports, the GGUF)
were 0600, while manifests and journals were 0644.  Now :func:`ssb.journal.atomic_write_text`
sets :func:`ssb.journal.output_mode` on its temporary file, and so does ``ssb export`` on its
GGUF: one rule, applied where the files are made.  Checked on real ``ssb curate``, ``ssb eval``
and ``ssb export`` processes run under umask 027, so that neither 0600 nor 0644 can pass.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from test_export import _random_lora

UMASK = 0o027
EXPECTED = 0o640


def _ssb(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          timeout=600, preexec_fn=lambda: os.umask(UMASK))
    assert proc.returncode == 0, proc.stderr


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_results_summaries_reports_and_manifests_share_one_mode(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir)
    _ssb("curate", "--domain", "arithmetic", "--backend", "transformers", "--model", model,
         "--limit", "2", "--rollouts", "2", "--max-tokens", "8", "--out",
         str(tmp_path / "curate"), "--no-progress")
    _ssb("eval", "--dataset", "arithmetic", "--backend", "transformers", "--model", model,
         "--limit", "2", "--max-tokens", "8", "--out", str(tmp_path / "eval"), "--no-progress")
    _random_lora(model, tmp_path / "adapter")
    _ssb("export", "--adapter", str(tmp_path / "adapter"), "--gguf",
         str(tmp_path / "export" / "adapter.gguf"), "--base", model)

    modes = {**{f"curate/{k}": v for k, v in _modes(tmp_path / "curate").items()},
             **{f"eval/{k}": v for k, v in _modes(tmp_path / "eval").items()},
             **{f"export/{k}": v for k, v in _modes(tmp_path / "export").items()}}
    for name in ("curate/manifest.json", "curate/stats.json", "curate/curated.jsonl",
                 "curate/journal.jsonl", "eval/manifest.json", "eval/summary.json",
                 "eval/results.jsonl", "export/adapter.gguf"):
        assert name in modes, sorted(modes)
    assert {k: v for k, v in modes.items() if v != oct(EXPECTED)} == {}, modes
