"""Greedy agreement of the vllm backend with the transformers backend on the embedded default's
cached HF copy (Qwen2.5-Coder-0.5B-Instruct, dequantized), fp32 on both sides: 24 prompts, the
same text and token counts (measured: 24/24; plugins/backends/README.md)."""

from __future__ import annotations

import pytest

from vllm_helpers import SKIP_REASON

pytest.importorskip("vllm", reason=SKIP_REASON)

from ssb.plugins import get_registry  # noqa: E402
from ssb.records import SamplingParams  # noqa: E402

PROMPTS = [f"What is {a} * {b}? Answer in one sentence." for a, b in
           [(7, 8), (12, 13), (17, 23), (31, 4), (9, 99), (45, 6)]] + \
          [f"Solve for x: {a}x + {b} = {c}. Show the steps briefly." for a, b, c in
           [(2, 3, 13), (5, 1, 26), (3, 7, 22)]] + \
          ["Name three prime numbers greater than 50.", "Write a haiku about autumn.",
           "Explain what a hash table is in two sentences.", "What is the capital of France?",
           "Write a Python function that reverses a string.", "List the first 8 Fibonacci numbers.",
           "Convert 100 degrees Fahrenheit to Celsius.", "What is the derivative of x^3 + 2x?",
           "Give one synonym for 'happy'.", "How many days are in a leap year?",
           "Translate 'good morning' into Spanish.", "What is 2 to the power of 10?",
           "Summarize the plot of Romeo and Juliet in one sentence.",
           "Is 91 a prime number? Explain.", "What is the square root of 144?"]


@pytest.mark.slow
def test_greedy_matches_transformers_on_the_default_model(small_gguf, tmp_path):
    from ssb.models import hf_dir

    model = hf_dir(str(small_gguf))
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=48, seed=0)
    v = get_registry().backend("vllm").create(model, dtype="float32", enforce_eager=True,
                                              kv_cache_space=1, max_model_len=1024,
                                              log_file=str(tmp_path / "vllm.log"))
    try:
        got = [per[0] for per in v.generate(convs, params)]
    finally:
        v.close()
    t = get_registry().backend("transformers").create(model, dtype="float32", device="cpu",
                                                      batch_size=8)
    try:
        want = [per[0] for per in t.generate(convs, params)]
    finally:
        t.close()
    same = [g.to_dict() == w.to_dict() for g, w in zip(got, want)]
    print(f"\nvllm vs transformers, fp32 greedy: {sum(same)}/{len(same)} identical")
    assert all(same), [(g, w) for g, w, s in zip(got, want, same) if not s]
    # Both ends of the contract are exercised: end-of-turn (eos not counted) and a spent budget.
    assert {"stop", "length"} <= {g.finish_reason for g in got}
