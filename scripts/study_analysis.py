"""Why did an arm win or lose?  The diagnostics of docs/study.md section "Analysis", read from a
study directory (finished or not; what is missing is skipped).

    .venv/bin/python scripts/study_analysis.py runs/study-arithmetic [--json OUT.json]

* **What the teacher wrote vs what the student already writes.**  For every kept record: the
  hinted solution's length against the student's own correct rollout, their text similarity
  (difflib ratio), whether the solution contains code.  If the robust solutions are near-copies
  of the student's own correct samples, SSB's targets add little beyond rejection sampling, and
  any difference between ``ssb`` and ``sft`` comes from the soft signal alone.
* **How far the hint moves the distribution.**  Each arm's held-out KL(teacher || student) and
  solution CE per token at step 0 (the base model: the hint's whole effect) and at the end.
* **How each arm answers.**  Per eval set and arm: accuracy, mean response tokens, truncation
  rate, answers with code, and the problems only the arm (or only the base) got right.

Pure reading: nothing is generated or trained.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from ssb.journal import read_jsonl

CODE = re.compile(r"```|\bprint\(")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of ``path``, or none while the stage that writes it has not run."""
    return list(read_jsonl(path)) if path.is_file() else []


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def curated_targets(study: Path) -> dict[str, Any]:
    """The hinted solutions against the student's own correct rollouts."""
    records = _jsonl(study / "curate" / "curated.jsonl")
    if not records:
        return {}
    similarity, solution_tokens, rollout_tokens = [], [], []
    near_copies = with_code = rollout_code = 0
    for r in records:
        own = r["correct_rollout"]["text"]
        ratio = difflib.SequenceMatcher(None, own, r["solution"], autojunk=False).ratio()
        similarity.append(ratio)
        near_copies += ratio >= 0.9
        with_code += bool(CODE.search(r["solution"]))
        rollout_code += bool(CODE.search(own))
        solution_tokens.append(r["metadata"]["solution_num_tokens"])
        rollout_tokens.append(r["correct_rollout"]["num_tokens"])
    n = len(records)
    return {"records": n,
            "median_similarity_to_own_correct_rollout": _median(similarity),
            "near_copies_of_own_correct_rollout": near_copies,
            "solutions_with_code": with_code, "correct_rollouts_with_code": rollout_code,
            "median_correct_rollout_tokens": _median(rollout_tokens),
            "median_solution_tokens": _median(solution_tokens)}


def heldout_curves(study: Path) -> dict[str, Any]:
    out = {}
    for arm_dir in sorted((study / "arms").glob("*")):
        rows = _jsonl(arm_dir / "heldout.jsonl")
        if rows:
            out[arm_dir.name] = {"points": len(rows),
                                 "kl_start": rows[0].get("kl"), "kl_end": rows[-1].get("kl"),
                                 "ce_start": rows[0].get("ce"), "ce_end": rows[-1].get("ce"),
                                 "step_end": rows[-1].get("step")}
    return out


def _add_texts(rows: dict[str, dict], texts: Path) -> None:
    """A snapshot's results.jsonl has no reply texts; scripts/study_snapshot.py keeps them in
    texts.jsonl.gz beside it.  Put them back where a sample lacks its text."""
    if not texts.is_file() or all("text" in s for r in rows.values() for s in r["samples"]):
        return
    with gzip.open(texts, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                entry = json.loads(line)
                row = rows.get(entry["id"])
                if row is not None:
                    for sample, text in zip(row["samples"], entry["texts"]):
                        sample.setdefault("text", text)


def eval_behaviour(study: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dataset_dir in sorted((study / "eval").glob("*")):
        arms = {}
        for arm_dir in sorted(dataset_dir.glob("*")):
            rows = {r["id"]: r for r in _jsonl(arm_dir / "results.jsonl")}
            _add_texts(rows, arm_dir / "texts.jsonl.gz")
            if rows:
                arms[arm_dir.name] = rows
        if not arms:
            continue
        entry: dict[str, Any] = {}
        base = arms.get("base")
        for name, rows in arms.items():
            samples = [r["samples"][0] for r in rows.values()]
            info: dict[str, Any] = {
                "problems": len(rows),
                "accuracy": round(sum(s["correct"] for s in samples) / len(samples), 4),
                "mean_response_tokens": round(statistics.mean(s["num_tokens"] for s in samples), 1),
                "truncated": sum(s["finish_reason"] == "length" for s in samples),
                # None where the texts were not kept (a snapshot made before they were)
                "with_code": (sum(bool(CODE.search(s["text"])) for s in samples)
                              if all("text" in s for s in samples) else None),
            }
            if base is not None and name != "base":
                shared = sorted(set(rows) & set(base))
                info["only_this_arm_right"] = [i for i in shared if rows[i]["samples"][0]["correct"]
                                               and not base[i]["samples"][0]["correct"]]
                info["only_base_right"] = [i for i in shared if base[i]["samples"][0]["correct"]
                                           and not rows[i]["samples"][0]["correct"]]
            entry[name] = info
        out[dataset_dir.name] = entry
    return out


def analyse(study: Path) -> dict[str, Any]:
    return {"study": str(study), "curated_targets": curated_targets(study),
            "heldout": heldout_curves(study), "eval": eval_behaviour(study)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    if not any((args.study / part).is_dir() for part in ("curate", "data", "arms", "eval")):
        print(f"error: {args.study}: not a study directory (no curate/, data/, arms/ or eval/)",
              file=sys.stderr)
        return 2
    data = analyse(args.study)
    text = json.dumps(data, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    # The per-problem lists are long: print counts, keep the ids in --json.
    for entry in data["eval"].values():
        for info in entry.values():
            for key in ("only_this_arm_right", "only_base_right"):
                if key in info:
                    info[key] = len(info[key])
    print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
