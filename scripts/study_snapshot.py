"""Copy the small result files of a study run into a directory that is committed.

    python scripts/study_snapshot.py RUN_DIR DEST

Copies curate stats/manifest, each arm's manifest, metrics and held-out curves, each eval's
summary (not the per-problem results, which can be regenerated and are large), and, once the
study finished, study.json, report.md and the plots.  Safe to run while the study is running: it
copies what exists.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PATTERNS = ["curate/stats.json", "curate/manifest.json", "arms/*/manifest.json",
            "arms/*/metrics.jsonl", "arms/*/heldout.jsonl", "arms/*/.ssb-run-stage.json",
            "eval/*/*/summary.json", "eval/*/*/.ssb-run-stage.json", "data/*/curated.jsonl",
            "study.json", "report.md", "plots/*.png", "manifest.json"]


def main(run: Path, dest: Path) -> int:
    copied = 0
    for pattern in PATTERNS:
        for src in sorted(run.glob(pattern)):
            target = dest / src.relative_to(run)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            copied += 1
    print(f"copied {copied} file(s) from {run} to {dest}")
    return 0 if copied else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
