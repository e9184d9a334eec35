"""Rollout tokens/s of the llama.cpp backend by ``n_parallel``: where batched decoding stops
paying on this machine.

The same workload for every setting: P prompts x n samples (GSM8K questions, math-tutor system
prompt, seeded; sampling ``ssb curate``'s default T 0.8 top-k 50 unless given), ``max`` new
tokens, the embedded small model, the same threads.  ``n_parallel=1`` is the backend's
one-at-a-time path (``create_completion`` per rollout, prompt reused from the KV cache): the
baseline of ``bench_generation``.  Each setting loads the model afresh (excluded from the time)
and runs alone; the load average is printed.

    .venv/bin/python benchmarks/generation_sweep.py [--parallel 1,4,8,16,32] [--prompts 8]
        [--samples 4] [--max-tokens 128] [--temperature 0.8] [--top-k 50] [--top-p 1.0]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parallel", default="1,4,8,16,32")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=50, help="0 = off")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from benchmarks.bench_generation import questions
    from ssb.models import resolve
    from ssb.plugins import get_registry
    from ssb.prompts import MATH_TUTOR_SYSTEM
    from ssb.records import SamplingParams

    ref = resolve("default")
    convs = [[{"role": "system", "content": MATH_TUTOR_SYSTEM}, {"role": "user", "content": q}]
             for q in questions(args.prompts)]
    params = SamplingParams(n=args.samples, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, max_new_tokens=args.max_tokens, seed=0)
    rows = []
    for p in [int(x) for x in args.parallel.split(",")]:
        backend = get_registry().backend("llama.cpp").create(
            ref.location, n_threads=args.threads, n_ctx=1024, n_parallel=p)
        try:
            load = os.getloadavg()
            t = time.perf_counter()
            out = backend.generate(convs, params)
            seconds = time.perf_counter() - t
        finally:
            backend.close()
        tokens = sum(c.num_tokens for per in out for c in per)
        rows.append({"n_parallel": p, "tokens": tokens, "seconds": seconds,
                     "tokens_per_s": tokens / seconds, "load_before": load})
        base = rows[0]["tokens_per_s"]
        print(f"n_parallel {p:>3}: {tokens:>5} tokens in {seconds:6.1f} s = "
              f"{tokens / seconds:6.1f} tok/s ({tokens / seconds / base:.2f}x the first row); "
              f"load before {load[0]:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"config": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
