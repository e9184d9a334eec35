"""Batched decoding in the llama.cpp backend (-B n_parallel), on the real small model.

``n_parallel=1`` is the plain one-sequence-at-a-time loop over ``create_completion``; the
batched decoder must give the same rollouts wherever llama.cpp computes the same logits, and a
rollout must never depend on what else is in the batch.
"""

from __future__ import annotations

import json

import pytest

from ssb.errors import SsbError
from ssb.plugins import get_registry
from ssb.records import SamplingParams

pytestmark = pytest.mark.llama

CONVS = [
    [{"role": "system", "content": "You are a helpful math tutor. Answer briefly."},
     {"role": "user", "content": "What is 7 * 8?"}],
    [{"role": "user", "content": "Name one prime number greater than 10."}],
    [{"role": "system", "content": "Reason step by step and put the final answer in \\boxed{}."},
     {"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then "
                                 "she sold half as many clips in May. How many clips did "
                                 "Natalia sell altogether in April and May?"}],
    [{"role": "user", "content": "Write one sentence about the sea."}],
]


def _load(small_gguf, **options):
    pytest.importorskip("llama_cpp")
    options.setdefault("n_threads", 2)
    options.setdefault("n_ctx", 512)
    return get_registry().backend("llama.cpp").create(str(small_gguf), **options)


@pytest.fixture(scope="module")
def backends(small_gguf):
    """One-at-a-time, 3 slots and 4 slots, loaded once for the module."""
    made = {n: _load(small_gguf, n_parallel=n) for n in (1, 3, 4)}
    yield made
    for b in made.values():
        b.close()


def _rows(result):
    return [[(c.text, c.num_tokens, c.finish_reason) for c in per] for per in result]


def test_batched_is_the_default_and_n_parallel_is_checked(small_gguf, backends):
    assert backends[4].decoder is not None and backends[1].decoder is None
    b = _load(small_gguf)
    try:
        assert b.n_parallel == 8 and b.decoder is not None
    finally:
        b.close()
    with pytest.raises(SsbError, match="n_parallel must be >= 1"):
        _load(small_gguf, n_parallel=0)


def test_batched_equals_one_at_a_time(backends):
    """Up to 3 rows per ubatch llama.cpp uses the one-row kernels: identical logits, so
    identical texts, token counts and finish reasons, greedy and seeded sampling alike.  With 4
    rows it switches kernels (rounding differs by up to ~0.3 on a logit); on these short
    answers the greedy texts are still the same, which is what we check there."""
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=32)
    sampled = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=24, seed=5)
    one = {k: _rows(backends[1].generate(CONVS, p)) for k, p in
           (("greedy", greedy), ("sampled", sampled))}
    assert _rows(backends[3].generate(CONVS, greedy)) == one["greedy"]
    assert _rows(backends[3].generate(CONVS, sampled)) == one["sampled"]
    assert _rows(backends[4].generate(CONVS, greedy)) == one["greedy"]
    assert "56" in one["greedy"][0][0][0]


@pytest.mark.slow  # ~23 s here: out of the quick loop (`-m "not slow"`, under 5 min)
def test_rollouts_do_not_depend_on_the_batch_around_them(backends):
    """More rollouts than slots (the queue refills slots as rollouts end, so each step mixes
    different sequences), in different groupings and orders: every conversation's samples are
    the same as when it runs alone."""
    b = backends[4]
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=24, seed=7)
    together = _rows(b.generate(CONVS, params))
    reordered = _rows(b.generate(CONVS[::-1], params))[::-1]
    alone = [_rows(b.generate([conv], params))[0] for conv in CONVS]
    pairs = _rows(b.generate(CONVS[2:], params)) + _rows(b.generate(CONVS[:2], params))
    pairs = pairs[2:] + pairs[:2]
    assert together == alone == reordered == pairs
    # The n samples of a conversation use distinct seeds; another seed gives other samples.
    assert any(len({text for text, _, _ in per}) > 1 for per in together)
    other = _rows(b.generate(CONVS, SamplingParams(**{**params.to_dict(), "seed": 8})))
    assert other != together


def test_finish_reasons_token_counts_and_limits(backends):
    b, one = backends[4], backends[1]
    # A spent budget: "length", exactly max_new_tokens tokens.
    long = b.generate([CONVS[2]], SamplingParams(temperature=0.0, max_new_tokens=8))[0][0]
    assert long.finish_reason == "length" and long.num_tokens == 8
    # End of turn: "stop", the end-of-turn token neither counted nor in the text.
    full = b.generate([CONVS[0]], SamplingParams(temperature=0.0, max_new_tokens=48))[0][0]
    assert full.finish_reason == "stop" and 0 < full.num_tokens < 48
    assert "<|im_end|>" not in full.text and "56" in full.text
    # A stop string: text cut before it, tokens counted up to the one that completed it.
    cut = b.generate([CONVS[0]], SamplingParams(temperature=0.0, max_new_tokens=48,
                                                stop=["56"]))[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:full.text.index("56")]
    assert cut.num_tokens < full.num_tokens
    assert _rows([[cut]]) == _rows(one.generate([CONVS[0]], SamplingParams(
        temperature=0.0, max_new_tokens=48, stop=["56"])))
    # Sampled rollouts never exceed the budget, and progress counts every completion.
    seen = []
    res = b.generate(CONVS, SamplingParams(n=3, temperature=1.0, max_new_tokens=16, seed=1),
                     progress=seen.append)
    assert sum(seen) == 12
    assert all(0 < c.num_tokens <= 16 for per in res for c in per)
    assert all(c.finish_reason == "length" for per in res for c in per if c.num_tokens == 16)


def test_context_window_is_per_sequence(small_gguf):
    """n_ctx is per sequence: new tokens stop at prompt + new = the sequence's context (n_ctx
    rounded up to 256 by llama.cpp), "length", exactly where the one-at-a-time loop stops; a
    prompt longer than n_ctx is one clear error."""
    conv = [{"role": "user", "content": "Continue this list up to 400: "
             + ", ".join(str(i) for i in range(1, 51))}]
    # max_new_tokens within n_ctx (a larger one is refused up front: check_params), but prompt +
    # new tokens beyond it.
    params = SamplingParams(temperature=0.0, max_new_tokens=250)
    rows = {}
    for n in (1, 4):
        b = _load(small_gguf, n_parallel=n, n_ctx=256)
        try:
            prompt_len = len(b._prompt(conv, params, 0)[0])
            assert 150 < prompt_len < 240  # leaves room for a few new tokens only
            rows[n] = _rows(b.generate([conv], params))
            with pytest.raises(SsbError, match="n_ctx"):
                b.generate([[{"role": "user", "content": "x " * 300}]], params)
        finally:
            b.close()
    _, num_tokens, reason = rows[4][0][0]
    assert reason == "length" and num_tokens == 256 - prompt_len
    assert rows[4] == rows[1]


@pytest.mark.slow  # ~33 s here (four model loads): out of the quick loop
def test_gguf_lora_adapter_is_applied_in_batched_decoding(small_gguf, tmp_path):
    """The batched context carries the same GGUF LoRA at the same scale: greedy text with the
    adapter differs from the base model's, equals the one-at-a-time loop's with the adapter,
    and at lora_scale=0 is the base model's again."""
    lora = _random_gguf_lora(small_gguf, tmp_path)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    out = {}
    for label, kwargs in {"base": {}, "lora": {"adapter": str(lora)},
                          "lora_seq": {"adapter": str(lora), "n_parallel": 1},
                          "lora_off": {"adapter": str(lora), "lora_scale": 0.0}}.items():
        kwargs.setdefault("n_parallel", 4)
        b = _load(small_gguf, **kwargs)
        try:
            out[label] = b.generate(CONVS[:2], params)
        finally:
            b.close()
    texts = {k: [per[0].text for per in v] for k, v in out.items()}
    assert texts["lora"] != texts["base"]
    assert texts["lora"] == texts["lora_seq"]
    assert texts["lora_off"] == texts["base"]


def test_generate_command_samples_n_in_parallel(ssb_cli, small_gguf):
    code, out, err = ssb_cli("generate", "--backend", "llama.cpp", "--model", str(small_gguf),
                             "--prompt", "What is 7 * 8?", "--system", "Answer briefly.",
                             "-n", "8", "--temperature", "0.8", "--max-tokens", "24",
                             "--json", "-B", "n_threads=2", "-B", "n_ctx=256")
    assert code == 0, err
    data = json.loads(out.strip().splitlines()[-1])
    completions = data["completions"]
    assert len(completions) == 8
    assert len({c["text"] for c in completions}) > 1
    assert all(0 < c["num_tokens"] <= 24 for c in completions)


def _random_gguf_lora(small_gguf, tmp_path):
    """A LoRA in peft's file format (random weights shaped for the small model's attention),
    exported by ``ssb export`` to a GGUF LoRA (as in test_backend_llama.py)."""
    import numpy as np
    from safetensors.numpy import save_file

    from ssb.export import export_lora_to_gguf

    rng = np.random.default_rng(0)
    r, hidden = 8, 896
    tensors = {}
    for layer in range(24):
        for module in ("q_proj", "o_proj"):
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.05, (r, hidden)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, 0.05, (hidden, r)).astype(np.float32)
    adapter = tmp_path / "peft"
    adapter.mkdir()
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": 16, "target_modules": ["q_proj", "o_proj"],
         "bias": "none"}))
    lora = tmp_path / "adapter.gguf"
    export_lora_to_gguf(adapter, lora, base=small_gguf)
    return lora
