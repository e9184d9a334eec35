"""Greedy agreement of the vllm backend with the transformers backend: the 24 prompts of
tests/vllm_engine/test_vllm_agreement.py, one model, an optional adapter, vLLM at a chosen dtype
(transformers always fp32, the reference).  Prints how many texts are identical, and for the
others the first token where they part.  Run it under .venv-vllm (it has both backends):

    .venv-vllm/bin/python scripts/vllm_agreement.py --model default [--adapter DIR]
        [--vllm-dtype bfloat16] [--max-tokens 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "vllm_engine"))
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--adapter")
    parser.add_argument("--vllm-dtype", default="float32")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from test_vllm_agreement import PROMPTS

    from benchmarks.harness import _cpu_model

    from ssb.models import hf_dir, resolve
    from ssb.plugins import get_registry
    from ssb.records import SamplingParams

    model = hf_dir(resolve(args.model))
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=args.max_tokens, seed=0)
    lora = {"max_lora_rank": 64} if args.adapter else {}
    t0 = time.perf_counter()
    v = get_registry().backend("vllm").create(model, adapter=args.adapter, dtype=args.vllm_dtype,
                                              kv_cache_space=2, max_model_len=2048, **lora)
    try:
        t1 = time.perf_counter()
        got = [per[0] for per in v.generate(convs, params)]
        t2 = time.perf_counter()
    finally:
        v.close()
    t = get_registry().backend("transformers").create(model, adapter=args.adapter,
                                                      dtype="float32", device="cpu",
                                                      batch_size=8)
    try:
        t3 = time.perf_counter()
        want = [per[0] for per in t.generate(convs, params)]
        t4 = time.perf_counter()
    finally:
        t.close()
    tok = t.tokenizer if hasattr(t, "tokenizer") else None
    rows = []
    for prompt, g, w in zip(PROMPTS, got, want):
        same = g.text == w.text and g.num_tokens == w.num_tokens
        row = {"prompt": prompt, "same": same, "vllm": g.to_dict(), "transformers": w.to_dict()}
        if not same:
            a = tok.encode(g.text) if tok is not None else list(g.text)
            b = tok.encode(w.text) if tok is not None else list(w.text)
            row["first_difference"] = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                                           min(len(a), len(b)))
        rows.append(row)
    n_same = sum(r["same"] for r in rows)
    summary = {"model": args.model, "adapter": args.adapter, "vllm_dtype": args.vllm_dtype,
               "transformers_dtype": "float32", "max_tokens": args.max_tokens,
               "identical": n_same, "prompts": len(rows),
               "vllm_seconds": {"load": round(t1 - t0, 1), "generate": round(t2 - t1, 1)},
               "transformers_seconds": {"generate": round(t4 - t3, 1)},
               "cpu": _cpu_model(), "load_average": os.getloadavg()}
    print(json.dumps(summary))
    for r in rows:
        if not r["same"]:
            print(f"differs at token {r['first_difference']}: {r['prompt']!r}\n"
                  f"  vllm:         {r['vllm']['text'][:160]!r}\n"
                  f"  transformers: {r['transformers']['text'][:160]!r}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
