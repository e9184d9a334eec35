"""A failed distill leaves nothing that refuses the corrected command (issue 21).

Before, a loss parameter that the loss refuses (``jsd.beta=1.5``) or does not take
(``kl.scale=2``) failed at the first training step, after the stage had written its manifest and
marked its work started; the corrected command was then refused as "a different config".  Loss
parameters are now tried while the config is checked (:func:`ssb.losses.check_loss_params`), so
the bad command is refused in one line before the output directory exists, and the corrected
one runs.  Real ``ssb distill`` processes on the tiny model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from test_alignment import make_record, write_curated


@pytest.mark.parametrize("bad,good,why", [
    ("jsd=1,jsd.beta=1.5", "jsd=1,jsd.beta=0.5", "jsd beta must be strictly between 0 and 1"),
    ("kl=1,kl.scale=2", "kl=1", "unexpected keyword argument 'scale'"),
])
def test_a_bad_loss_parameter_leaves_no_manifest_behind(bad, good, why, tiny_model_dir,
                                                        tmp_path):
    curated = write_curated(tmp_path / "curated", [make_record(i) for i in range(4)])
    out = tmp_path / "out"

    def distill(loss: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ssb", "distill", "--curated", str(curated), "--model",
             str(tiny_model_dir), "--out", str(out), "--loss", loss, "--lora-r", "4",
             "--lora-alpha", "8", "--max-length", "256", "--max-steps", "1", "--batch-size", "2",
             "--no-progress"], capture_output=True, text=True, timeout=600)

    refused = distill(bad)
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: --loss ") and why in lines[0], lines
    assert not (out / "manifest.json").exists()

    corrected = distill(good)
    assert corrected.returncode == 0, corrected.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["finished"] and manifest["config"]["loss"] == good
