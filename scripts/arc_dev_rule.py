"""Choose the science domain's ``min_correct`` on ARC dev, by the rule fixed before the run.

    python scripts/arc_dev_rule.py runs/arc/curate-dev-min1 [--need 116 --pool 869]

Reads one ``ssb curate --min-correct 1`` run's journal (dev questions only) and reports, for
``min_correct`` 1 and 2, how many questions reach the hinted teacher, how many are kept, the keep
rate and the teacher's accuracy. The ``min_correct = 2`` numbers are the subset of the same
questions with two or more right rollouts: the same rollouts and teacher prompts, no second run.

The rule (plugins/science/README.md, "Measurements", written before any number): keep
``min_correct = 2`` unless its keep rate could not reach ``--need`` records from the ``--pool``
dev questions, or its teacher accuracy is lower than ``min_correct = 1``'s. Prints one JSON
object (also written to DIR/dev-rule.json) whose ``choice`` is the value to use.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rule_numbers(journal: Path) -> dict[int, dict[str, float]]:
    from ssb.journal import Journal
    from ssb.stages.selection import ERROR, KEPT, TEACHER_WRONG, latest_outcomes

    # A question whose rollouts or teacher failed (ERROR) was not seen: it would lower the keep
    # rate for a reason that is not the rule's.
    last = {pid: e for pid, e in latest_outcomes(Journal(journal).read()).items()
            if e["status"] != ERROR}
    numbers = {}
    for k in (1, 2):
        sent = [e for e in last.values() if e["status"] in (KEPT, TEACHER_WRONG)
                and sum(e["rollout_correct"]) >= k]
        kept = sum(e["status"] == KEPT for e in sent)
        numbers[k] = {"seen": len(last), "to_teacher": len(sent), "kept": kept,
                      "keep_rate": kept / max(len(last), 1),
                      "teacher_accuracy": kept / max(len(sent), 1)}
    return numbers


def choose(numbers: dict[int, dict[str, float]], need: int, pool: int) -> tuple[int, str]:
    two, one = numbers[2], numbers[1]
    if two["keep_rate"] * pool < need:
        return 1, (f"min_correct 2 keeps {two['keep_rate']:.3f} of the {two['seen']} dev "
                   f"questions read: ~{two['keep_rate'] * pool:.0f} of the {need} records "
                   f"needed from {pool} dev questions")
    if two["teacher_accuracy"] < one["teacher_accuracy"]:
        return 1, (f"min_correct 2's teacher accuracy {two['teacher_accuracy']:.3f} is below "
                   f"min_correct 1's {one['teacher_accuracy']:.3f}")
    return 2, (f"min_correct 2 keeps {two['keep_rate']:.3f} of the {two['seen']} dev questions "
               f"read (~{two['keep_rate'] * pool:.0f} >= {need} expected from {pool}) "
               f"and its teacher accuracy {two['teacher_accuracy']:.3f} is not below "
               f"min_correct 1's {one['teacher_accuracy']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an ssb curate --min-correct 1 output directory")
    parser.add_argument("--need", type=int, default=116, help="records the ARC run must keep")
    parser.add_argument("--pool", type=int, default=869, help="dev questions it may curate from")
    args = parser.parse_args(argv)
    journal = args.run / "journal.jsonl"
    if not journal.is_file():
        print(f"arc_dev_rule: {journal}: no curate journal", file=sys.stderr)
        return 2
    numbers = rule_numbers(journal)
    choice, why = choose(numbers, args.need, args.pool)
    result = {"min_correct": {str(k): v for k, v in numbers.items()}, "choice": choice,
              "why": why, "need": args.need, "pool": args.pool}
    text = json.dumps(result, indent=2)
    tmp = args.run / "dev-rule.json.tmp"
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(args.run / "dev-rule.json")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
