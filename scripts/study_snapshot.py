"""Copy the small result files of a study run into a directory that is committed.

    python scripts/study_snapshot.py RUN_DIR DEST

Copies curate stats/manifest, each arm's manifest, metrics and held-out curves, each
evaluation's summary (``eval/DATASET/ARM``, and ``repro/NAME``: evaluations run beside the
study) and its per-problem results without the reply texts (``results.jsonl`` with each sample's
verdict, extracted answer, token count and finish reason: ~0.4 KB a problem instead of ~1.6 KB;
``ssb eval compare`` pairs the snapshot's runs problem by problem) with the texts beside it in
``texts.jsonl.gz`` (~0.5 KB a problem; the analysis reads them), and, once the study
finished, study.json, report.md and the plots.  Safe to run while the study is running: it copies
what exists (an eval's results only once it is finished, i.e. has its summary).

An evaluation (or a curation) still running has its journal (reply texts included) and manifest
copied under ``DEST/partial/``, so that a machine that does not outlive the session loses none of it once
committed: ``scripts/study_restore.py`` puts it back and the evaluation resumes from it.  The
partial copy is deleted once the evaluation has finished.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from pathlib import Path

TEXTS = "texts.jsonl.gz"  # beside a snapshot's results.jsonl: the reply texts, compressed
PATTERNS = ["curate/stats.json", "curate/manifest.json", "curate/.ssb-run-stage.json",
            "arms/*/manifest.json", "arms/*/metrics.jsonl", "arms/*/heldout.jsonl",
            "arms/*/.ssb-run-stage.json",
            "eval/*/*/summary.json", "eval/*/*/.ssb-run-stage.json", "data/*/curated.jsonl",
            "study.json", "report.md", "plots/*.png", "manifest.json",
            "repro/*/summary.json",  # evaluations run beside a study (Part 2's reproduction)
            # a prompt arm's dev choice and the evaluations it was made on
            "select/*/choice.json", "select/*/*/summary.json", "select/*/*/.ssb-run-stage.json"]


def main(run: Path, dest: Path) -> int:
    copied = 0
    for pattern in PATTERNS:
        for src in sorted(run.glob(pattern)):
            target = dest / src.relative_to(run)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            copied += 1
    finished = [*run.glob("eval/*/*/summary.json"), *run.glob("repro/*/summary.json")]
    for summary in sorted(finished):
        results = summary.parent / "results.jsonl"
        if results.is_file():
            target = dest / results.relative_to(run)
            _without_texts(results, target)
            copied += _texts(results, target.with_name(TEXTS))
            copied += 1
    for journal in sorted([*run.glob("eval/*/*/journal.jsonl"),
                           *run.glob("select/*/*/journal.jsonl")]):
        partial = dest / "partial" / journal.parent.relative_to(run)
        if (journal.parent / "summary.json").is_file():
            if partial.is_dir():
                shutil.rmtree(partial)  # finished: its results above replace it
            continue
        for name in ("journal.jsonl", "manifest.json"):
            if (journal.parent / name).is_file():
                partial.mkdir(parents=True, exist_ok=True)
                tmp = partial / (name + ".tmp")
                shutil.copyfile(journal.parent / name, tmp)
                os.replace(tmp, partial / name)
                copied += 1
    curate = run / "curate"  # a curation still running: its journal, manifest and stats
    partial = dest / "partial" / "curate"
    if (curate / ".ssb-run-stage.json").is_file():
        if partial.is_dir():
            shutil.rmtree(partial)  # finished: its marker and the split records replace it
    elif (curate / "journal.jsonl").is_file():
        for name in ("journal.jsonl", "manifest.json", "stats.json"):
            if (curate / name).is_file():
                partial.mkdir(parents=True, exist_ok=True)
                tmp = partial / (name + ".tmp")
                shutil.copyfile(curate / name, tmp)
                os.replace(tmp, partial / name)
                copied += 1
    print(f"copied {copied} file(s) from {run} to {dest}")
    return 0 if copied else 1


def _texts(src: Path, target: Path) -> int:
    """The reply texts, apart and compressed: one ``{"id", "texts"}`` line per problem, gzip with
    no timestamp (the same results give the same bytes).  Not rewritten from a results file that
    has no texts (one restored from a snapshot)."""
    rows = []
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                texts = [s.get("text") for s in row.get("samples", [])]
                if any(t is None for t in texts):
                    return 0
                rows.append(json.dumps({"id": row["id"], "texts": texts}, ensure_ascii=False))
    data = gzip.compress(("\n".join(rows) + "\n").encode("utf-8"), mtime=0)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return 1


def _without_texts(src: Path, target: Path) -> None:
    """results.jsonl with each sample's reply text left out (everything else kept)."""
    lines = []
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                row["samples"] = [{k: v for k, v in s.items() if k != "text"}
                                  for s in row.get("samples", [])]
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, target)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
