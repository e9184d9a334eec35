"""The GSM8K study's engine check (docs/study-gsm8k.md, Amendment 1): curation statistics of two
runs over the same problems, e.g. the llama.cpp run and the vLLM run.

    python scripts/study_engine_check.py A/curate/journal.jsonl B/curate/journal.jsonl

Only problems both journals finished are compared (the last entry per problem wins, as in curate):
per run the keep rate, the rollout accuracy and the hinted teacher's verified share, and, per
problem, how often the two runs agree on "kept" and on the number of correct rollouts.  Prints
one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def outcomes(path: Path) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                latest[row["id"]] = row
    return {k: v for k, v in latest.items() if v.get("status") != "error"}


def summary(rows: list[dict]) -> dict:
    rollouts = [c for r in rows for c in r.get("rollout_correct") or []]
    teacher = [r for r in rows if r.get("teacher_tokens") is not None]
    kept = sum(r["status"] == "kept" for r in rows)
    return {"problems": len(rows), "kept": kept, "keep_rate": round(kept / len(rows), 4),
            "rollout_accuracy": round(sum(rollouts) / len(rollouts), 4) if rollouts else None,
            "teacher_verified": f"{kept}/{len(teacher)}"}


def main(a: Path, b: Path) -> int:
    ra, rb = outcomes(a), outcomes(b)
    shared = [k for k in ra if k in rb]
    if not shared:
        print(json.dumps({"shared_problems": 0}))
        return 1
    both_kept = sum(ra[k]["status"] == "kept" and rb[k]["status"] == "kept" for k in shared)
    same_kept = sum((ra[k]["status"] == "kept") == (rb[k]["status"] == "kept") for k in shared)
    same_correct = sum(sum(ra[k].get("rollout_correct") or []) ==
                       sum(rb[k].get("rollout_correct") or []) for k in shared)
    print(json.dumps({
        "shared_problems": len(shared), str(a): summary([ra[k] for k in shared]),
        str(b): summary([rb[k] for k in shared]),
        "kept_in_both": both_kept, "same_kept_decision": same_kept,
        "same_number_of_correct_rollouts": same_correct}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
