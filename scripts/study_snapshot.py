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
copied under ``DEST/partial/``, so that a machine that does not outlive the session loses none
of it once committed: ``scripts/study_restore.py`` puts it back and the evaluation resumes from it.  The
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
            copied += _split_texts(results, target, target.with_name(TEXTS))
    for journal in sorted([*run.glob("eval/*/*/journal.jsonl"),
                           *run.glob("select/*/*/journal.jsonl")]):
        copied += _partial(journal.parent, dest / "partial" / journal.parent.relative_to(run),
                           finished=(journal.parent / "summary.json").is_file(),
                           names=("journal.jsonl", "manifest.json"))
    curate = run / "curate"  # a curation still running: its journal, manifest and stats
    if (curate / "journal.jsonl").is_file() or (curate / ".ssb-run-stage.json").is_file():
        copied += _partial(curate, dest / "partial" / "curate",
                           finished=(curate / ".ssb-run-stage.json").is_file(),
                           names=("journal.jsonl", "manifest.json", "stats.json"))
    print(f"copied {copied} file(s) from {run} to {dest}")
    return 0 if copied else 1


def _partial(src: Path, partial: Path, *, finished: bool, names: tuple[str, ...]) -> int:
    """An unfinished stage's ``names`` copied (atomically) into ``partial``; a finished stage's
    partial copy deleted (its results replace it).  Returns the number of files copied."""
    if finished:
        if partial.is_dir():
            shutil.rmtree(partial)
        return 0
    copied = 0
    for name in names:
        if (src / name).is_file():
            partial.mkdir(parents=True, exist_ok=True)
            tmp = partial / (name + ".tmp")
            shutil.copyfile(src / name, tmp)
            os.replace(tmp, partial / name)
            copied += 1
    return copied


def _split_texts(src: Path, target: Path, texts_target: Path) -> int:
    """results.jsonl (one read) as ``target`` with each sample's reply text left out (everything
    else kept), and the texts apart in ``texts_target``: one ``{"id", "texts"}`` line a problem,
    gzip with no timestamp (the same results give the same bytes).  The texts file is not
    rewritten from a results file that has none (one restored from a snapshot).  Returns the
    number of files written."""
    lines, texts, complete = [], [], True
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                samples = row.get("samples", [])
                replies = [s.get("text") for s in samples]
                complete = complete and all(t is not None for t in replies)
                texts.append(json.dumps({"id": row["id"], "texts": replies},
                                        ensure_ascii=False))
                row["samples"] = [{k: v for k, v in s.items() if k != "text"} for s in samples]
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    outputs = [(target, "".join(lines).encode("utf-8"))]
    if complete:
        outputs.append((texts_target,
                        gzip.compress(("\n".join(texts) + "\n").encode("utf-8"), mtime=0)))
    for path, data in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return len(outputs)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
