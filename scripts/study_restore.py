"""Seed a study's run directory on a fresh machine from its committed snapshot.

    python scripts/study_restore.py SNAPSHOT RUN_DIR

A session's machine does not outlive the session: only what is committed does.  This copies a
snapshot written by ``scripts/study_snapshot.py`` back into a run directory so that the study's
own journals and stage markers see the work that is already done:

- ``data/{train,heldout}/curated.jsonl`` (the records every arm trains on, byte for byte);
- each finished evaluation (``summary.json``, ``results.jsonl`` without reply texts, its stage
  marker): the study skips it, and a trained arm's marker names its adapter's fingerprint, so an
  evaluation is redone if the adapter is retrained into a different one;
- each trained arm's curves, manifest and marker (its adapter is not committed: model files never
  are; ``scripts/study_steps.py`` retrains an arm whose adapter is missing and says whether the
  retrained adapter is the one the committed evaluations used);
- each unfinished evaluation's or curation's journal (``partial/``, committed every few minutes
  while it runs): it resumes from it instead of starting over;
- each prompt arm's dev choice (``select/ARM/choice.json``, from ``study.json``).

A file that already exists in RUN_DIR is left alone (a run directory is newer than any
snapshot of it).  Nothing here runs a model.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

PARTIAL = "partial"  # study_snapshot.py's copies of unfinished stages' journals


def restore(snapshot: Path, run: Path) -> list[str]:
    copied: list[str] = []
    for src in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        rel = src.relative_to(snapshot)
        if rel.parts[0] == PARTIAL:
            rel = Path(*rel.parts[1:])
            if any((root / rel).parent.joinpath(done).exists() for root in (run, snapshot)
                   for done in ("summary.json", ".ssb-run-stage.json")):
                continue  # finished since: the finished results win
        elif rel.parts[0] == "plots" or str(rel) in ("study.json", "report.md", "manifest.json"):
            continue  # the study's own outputs: rewritten from the stages by the next report
        target = run / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        copied.append(str(rel))
    study = snapshot / "study.json"
    if study.is_file():
        for arm, choice in json.loads(study.read_text(encoding="utf-8")).get("prompts",
                                                                             {}).items():
            target = run / "select" / arm / "choice.json"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(choice, indent=2) + "\n", encoding="utf-8")
                copied.append(str(target.relative_to(run)))
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    snapshot, run = Path(argv[0]), Path(argv[1])
    if not snapshot.exists():
        print(f"study_restore: no snapshot at {snapshot} yet: nothing to restore")
        return 0
    if not snapshot.is_dir():
        print(f"study_restore: {snapshot}: not a directory", file=sys.stderr)
        return 2
    copied = restore(snapshot, run)
    print(f"study_restore: {len(copied)} file(s) from {snapshot} into {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
