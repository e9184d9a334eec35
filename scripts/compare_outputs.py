"""Compare two output trees of the same ssb commands (e.g. before and after a refactor).

    python scripts/compare_outputs.py OLD NEW

Curated records, rejected-free journals' outcomes and eval results must be identical; adapter
tensors must agree within 1e-6.  Prints one line per check and exits 1 on any difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main(old: Path, new: Path) -> int:
    from safetensors.torch import load_file

    failures = 0
    for rel in ("curate/curated.jsonl", "eval/results.jsonl"):
        a, b = _jsonl(old / rel), _jsonl(new / rel)
        same = a == b
        failures += not same
        print(f"{rel}: {len(a)} vs {len(b)} rows, identical={same}")
    outcome = lambda rows: [(e["id"], e["status"]) for e in rows]  # noqa: E731
    a, b = _jsonl(old / "curate/journal.jsonl"), _jsonl(new / "curate/journal.jsonl")
    same = outcome(a) == outcome(b)
    failures += not same
    print(f"curate/journal.jsonl outcomes: identical={same}")
    ta = load_file(str(old / "distill/adapter/adapter_model.safetensors"))
    tb = load_file(str(new / "distill/adapter/adapter_model.safetensors"))
    worst = max((ta[k] - tb[k]).abs().max().item() for k in ta) if set(ta) == set(tb) else None
    ok = worst is not None and worst <= 1e-6
    failures += not ok
    print(f"adapter: {len(ta)} tensors, max |old - new| = {worst}, within 1e-6={ok}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
