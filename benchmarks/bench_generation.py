"""Rollout throughput: transformers batched vs the reference one-rollout-at-a-time loop vs llama.cpp.

The same GSM8K questions (math-tutor system prompt, through the model's chat template), the same
model (the embedded small model by default: llama.cpp reads the GGUF, transformers reads its
cached HF conversion), the same sampling settings, all measured in one run:

- ``transformers-batched``: the ssb transformers backend (left-padded batches, n samples per
  prompt via ``num_return_sequences``);
- ``reference-loop``: what the reference implementation does, HF ``generate`` called once per
  rollout (batch of one), on the very same loaded model;
- ``llama.cpp``: the ssb llama.cpp backend (one sequence at a time, prompt shared by n samples).

Model load time is reported separately and excluded from the rates.  The default run is small
(4 prompts x 2 samples x 32 tokens); scale up with ``--prompts``, ``--n``, ``--max-tokens``.

    .venv/bin/python benchmarks/bench_generation.py [--prompts 8 --n 4 --max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GSM8K = Path(os.environ.get("SSB_SHARED_DATA", REPO.parent / "shared" / "data")) / "gsm8k" \
    / "train.jsonl"
FALLBACK = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
]


def questions(k: int) -> list[str]:
    if GSM8K.is_file():
        out = []
        with open(GSM8K, encoding="utf-8") as f:
            for line in f:
                out.append(json.loads(line)["question"])
                if len(out) == k:
                    break
        return out
    return [FALLBACK[i % len(FALLBACK)] for i in range(k)]


def reference_loop(backend, conversations, params) -> tuple[int, int]:
    """HF ``generate`` once per rollout, as the reference implementation does."""
    import torch
    from transformers import GenerationConfig

    tok, model = backend.tokenizer, backend.model
    sample = params.temperature > 0
    cfg = GenerationConfig(max_new_tokens=params.max_new_tokens, do_sample=sample,
                           temperature=params.temperature if sample else 1.0,
                           top_p=params.top_p if sample else 1.0, top_k=0, typical_p=1.0,
                           eos_token_id=backend.eos_ids, pad_token_id=backend.pad_id,
                           repetition_penalty=1.0)
    completions = tokens = 0
    torch.manual_seed(params.seed)
    for conv in conversations:
        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        for _ in range(params.n):
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     generation_config=cfg)
            new = out[0, ids.shape[1]:].tolist()
            end = next((i for i, t in enumerate(new) if t in backend.eos_ids), len(new))
            completions += 1
            tokens += end
    return completions, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help=".gguf file or 'default' (the embedded "
                    "small model); transformers uses its cached HF conversion")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=2, help="samples per prompt")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--batch-size", type=int, default=8, help="transformers sequences per batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", action="append", default=[],
                    choices=["transformers-batched", "reference-loop", "llama.cpp"])
    args = ap.parse_args()

    import torch

    from ssb.models import resolve
    from ssb.plugins import get_registry
    from ssb.prompts import MATH_TUTOR_SYSTEM
    from ssb.records import SamplingParams

    torch.set_num_threads(args.threads)
    ref = resolve(args.model)
    if not ref.is_gguf:
        sys.exit("--model must be a .gguf (llama.cpp runs it; transformers converts it)")
    convs = [[{"role": "system", "content": MATH_TUTOR_SYSTEM}, {"role": "user", "content": q}]
             for q in questions(args.prompts)]
    params = SamplingParams(n=args.n, temperature=args.temperature, top_p=0.95,
                            max_new_tokens=args.max_tokens, seed=args.seed)
    reg = get_registry()
    rows = []  # (engine, completions, tokens, seconds, load seconds)

    if not {"transformers-batched", "reference-loop"} <= set(args.skip):
        t = time.perf_counter()
        hf = reg.backend("transformers").create(ref.location, device="cpu", dtype="float32",
                                                batch_size=args.batch_size)
        load = time.perf_counter() - t
        if "transformers-batched" not in args.skip:
            t = time.perf_counter()
            res = hf.generate(convs, params)
            rows.append(("transformers-batched", sum(map(len, res)),
                         sum(c.num_tokens for per in res for c in per),
                         time.perf_counter() - t, load))
        if "reference-loop" not in args.skip:
            t = time.perf_counter()
            done, toks = reference_loop(hf, convs, params)
            rows.append(("reference-loop", done, toks, time.perf_counter() - t, load))
        hf.close()
    if "llama.cpp" not in args.skip:
        t = time.perf_counter()
        lc = reg.backend("llama.cpp").create(ref.location, n_threads=args.threads, n_ctx=2048)
        load = time.perf_counter() - t
        t = time.perf_counter()
        res = lc.generate(convs, params)
        rows.append(("llama.cpp", sum(map(len, res)),
                     sum(c.num_tokens for per in res for c in per), time.perf_counter() - t, load))
        lc.close()

    base = next((r for r in rows if r[0] == "reference-loop"), None)
    print(f"\n{args.prompts} prompts x n={args.n}, max {args.max_tokens} new tokens, "
          f"T={args.temperature}, {args.threads} threads, model {Path(ref.location).name}\n")
    header = (f"{'engine':<22}{'compl.':>7}{'tokens':>8}{'gen s':>9}{'load s':>8}"
              f"{'compl/s':>9}{'tok/s':>8}{'tok/s vs ref':>14}")
    print(header)
    print("-" * len(header))
    for name, done, toks, secs, load in rows:
        rate = toks / secs if secs else float("nan")
        ratio = f"{rate / (base[2] / base[3]):.2f}x" if base and base[2] else "-"
        print(f"{name:<22}{done:>7}{toks:>8}{secs:>9.1f}{load:>8.1f}{done / secs:>9.3f}"
              f"{rate:>8.1f}{ratio:>14}")


if __name__ == "__main__":
    main()
