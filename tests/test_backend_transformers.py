"""The transformers backend on the tiny random-weight model: batching, seeds, n>1, finish
reasons, stop strings, peft adapters, and the `ssb generate` command."""

from __future__ import annotations

import json

import pytest

from ssb.errors import SsbError
from ssb.plugins import get_registry
from ssb.records import SamplingParams

CONVS = [
    [{"role": "system", "content": "You are a helpful math tutor."},
     {"role": "user", "content": "Natalia sold clips to 48 of her friends in April."}],
    [{"role": "user", "content": "2+2?"}],
    [{"role": "system", "content": "Reason step by step."},
     {"role": "user", "content": "Janet's ducks lay 16 eggs per day. She eats three for "
                                 "breakfast every morning. How many are left?"}],
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    b = get_registry().backend("transformers").create(str(tiny_model_dir), device="cpu",
                                                      batch_size=4)
    yield b
    b.close()


def _texts(result):
    return [[c.text for c in per] for per in result]


def test_batched_equals_one_at_a_time_greedy(backend, tiny_model_dir):
    """Left padding must not change what the model says: a batch of prompts of different
    lengths gives the same greedy text as each prompt alone."""
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    batched = backend.generate(CONVS, params)
    alone = [backend.generate([c], params)[0] for c in CONVS]
    assert _texts(batched) == _texts(alone)
    assert len(batched) == len(CONVS)
    for per in batched:
        assert len(per) == 1 and per[0].num_tokens >= 1


def test_order_is_the_callers_not_the_length_sort(backend):
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    forward = backend.generate(CONVS, params)
    backward = backend.generate(CONVS[::-1], params)
    assert _texts(forward) == _texts(backward)[::-1]


def test_seeded_sampling_is_reproducible_and_n_samples_differ(backend):
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=16,
                            seed=123)
    seen = []
    first = backend.generate(CONVS, params, progress=seen.append)
    second = backend.generate(CONVS, params)
    assert _texts(first) == _texts(second)
    assert all(len(per) == 4 for per in first)
    # A random-weight model sampled at T=1 over ~1000 tokens: four identical samples would mean
    # the n samples share one random stream.
    assert all(len(set(per)) > 1 for per in _texts(first))
    other = backend.generate(CONVS, SamplingParams(**{**params.to_dict(), "seed": 124}))
    assert _texts(other) != _texts(first)
    assert sum(seen) == len(CONVS) * 4  # progress counts completions


def test_greedy_n_copies_and_length_finish_reason(backend):
    params = SamplingParams(n=3, temperature=0.0, max_new_tokens=5)
    result = backend.generate(CONVS[:2], params)
    for per in result:
        assert len(per) == 3 and len({c.text for c in per}) == 1
        for c in per:
            # The random model almost never emits <|im_end|> within 5 tokens; whichever way it
            # ended, the reason must match the token count.
            assert (c.finish_reason, c.num_tokens == 5) in {("length", True), ("stop", False)}
    assert any(c.finish_reason == "length" for per in result for c in per)


def test_eos_gives_stop_with_the_eos_excluded(tiny_model_dir):
    """An output head that puts 25 % on <|im_end|> and spreads the rest evenly: sampled rows end
    on the end-of-turn token within a few steps -> "stop", eos neither counted nor in the text."""
    import math

    import torch

    b = get_registry().backend("transformers").create(str(tiny_model_dir), device="cpu")
    eos = b.eos_ids[0]
    old = b.model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[eos] = math.log(0.25 * (old.out_features - 1) / 0.75)
    b.model.lm_head = head
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=40, seed=3)
    res = b.generate(CONVS, params)
    flat = [c for per in res for c in per]
    assert all(c.finish_reason == "stop" and c.num_tokens < 40 for c in flat)
    assert any(c.num_tokens > 0 for c in flat)
    assert all("<|im_end|>" not in c.text for c in flat)
    b.close()


def test_stop_strings_cut_the_text_and_say_stop(backend):
    base = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
    free = backend.generate(CONVS, base)
    # Choose, for each prompt, a stop string that really occurs in its greedy continuation.
    texts = [per[0].text for per in free]
    probe = next(t for t in texts if len(t.strip()) >= 6)
    stop = probe.strip()[2:5]
    stopped = backend.generate(CONVS, SamplingParams(**{**base.to_dict(), "stop": [stop]}))
    for full, per in zip(texts, stopped):
        c = per[0]
        if stop in full:
            assert c.finish_reason == "stop"
            assert c.text == full[:full.index(stop)]
            assert stop not in c.text
            assert 1 <= c.num_tokens < 24
        else:
            assert c.text == full
    assert any(per[0].finish_reason == "stop" for per in stopped)


def test_peft_lora_adapter_changes_the_output(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8,
                                                 target_modules=["q_proj", "v_proj", "o_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero (a no-op); give it weights that matter
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter_dir))

    reg = get_registry()
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    plain = reg.backend("transformers").create(str(tiny_model_dir), device="cpu")
    adapted = reg.backend("transformers").create(str(tiny_model_dir), adapter=str(adapter_dir),
                                                 device="cpu")
    unmerged = reg.backend("transformers").create(str(tiny_model_dir), adapter=str(adapter_dir),
                                                  device="cpu", merge_adapter=False)
    a, b, c = (x.generate(CONVS, params) for x in (plain, adapted, unmerged))
    assert _texts(a) != _texts(b)
    assert _texts(b) == _texts(c)  # merged and wrapped LoRA generate the same


def test_bad_inputs_are_clear_errors(tiny_model_dir, backend, tmp_path):
    factory = get_registry().backend("transformers")
    with pytest.raises(SsbError, match="unknown option"):
        factory.create(str(tiny_model_dir), n_threads=2)
    with pytest.raises(SsbError, match="adapter_config.json"):
        factory.create(str(tiny_model_dir), adapter=str(tmp_path))
    with pytest.raises(SsbError, match="top_p"):
        backend.generate(CONVS, SamplingParams(temperature=1.0, top_p=0.0))


def test_generate_command_json(ssb_cli, tiny_model_dir):
    code, out, err = ssb_cli("generate", "--backend", "transformers", "--model",
                             str(tiny_model_dir), "--prompt", "2+2?", "-n", "2", "--seed", "7",
                             "--max-tokens", "6", "--temperature", "0.9", "--json",
                             "-B", "device=cpu")
    assert code == 0, err
    data = json.loads(out.strip().splitlines()[-1])
    assert data["backend"] == "transformers"
    assert len(data["completions"]) == 2
    for c in data["completions"]:
        assert set(c) == {"text", "num_tokens", "finish_reason"}
        assert c["finish_reason"] in ("stop", "length")
    code2, out2, _ = ssb_cli("generate", "--backend", "transformers", "--model",
                             str(tiny_model_dir), "--prompt", "2+2?", "-n", "2", "--seed", "7",
                             "--max-tokens", "6", "--temperature", "0.9", "--json",
                             "-B", "device=cpu")
    assert code2 == 0
    assert json.loads(out2.strip().splitlines()[-1])["completions"] == data["completions"]


def test_generate_command_unknown_backend(ssb_cli, tiny_model_dir):
    code, _, err = ssb_cli("generate", "--backend", "nope", "--model", str(tiny_model_dir),
                           "--prompt", "hi")
    assert code == 2 and "unknown backend 'nope'" in err


def test_model_sampling_defaults_do_not_leak(tiny_model_dir, tmp_path):
    """A model whose generation_config says top_k=1 (i.e. greedy) must still sample freely when
    the caller says top_k=0 (off): transformers fills unset knobs from the model's config."""
    import shutil

    from transformers import GenerationConfig

    model_dir = tmp_path / "tiny-topk1"
    shutil.copytree(tiny_model_dir, model_dir)
    gen = GenerationConfig.from_pretrained(str(model_dir))
    gen.top_k, gen.do_sample, gen.repetition_penalty = 1, True, 1.3
    gen.save_pretrained(str(model_dir))
    b = get_registry().backend("transformers").create(str(model_dir), device="cpu")
    params = SamplingParams(n=6, temperature=1.0, top_k=0, max_new_tokens=8, seed=1)
    texts = [c.text for c in b.generate([CONVS[1]], params)[0]]
    assert len(set(texts)) > 1  # top_k=1 would make all six identical
    only_top1 = b.generate([CONVS[1]], SamplingParams(**{**params.to_dict(), "top_k": 1}))[0]
    assert len({c.text for c in only_top1}) == 1  # the caller's top_k=1 does make them equal


@pytest.mark.llama
def test_same_greedy_text_as_llama_cpp_from_the_same_gguf(small_gguf):
    """transformers runs the GGUF through its cached HF conversion; with the same chat template
    and prompt ids, greedy decoding agrees with llama.cpp on the real small model."""
    pytest.importorskip("llama_cpp")
    reg = get_registry()
    conv = [[{"role": "system", "content": "You are a helpful math tutor. Answer briefly."},
             {"role": "user", "content": "What is 7 * 8?"}]]
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    hf = reg.backend("transformers").create(str(small_gguf), device="cpu")
    try:
        hf_out = hf.generate(conv, params)[0][0]
    finally:
        hf.close()
    lc = reg.backend("llama.cpp").create(str(small_gguf), n_threads=2, n_ctx=512)
    try:
        lc_out = lc.generate(conv, params)[0][0]
    finally:
        lc.close()
    assert "56" in hf_out.text
    assert hf_out.text == lc_out.text
    assert (hf_out.num_tokens, hf_out.finish_reason) == (lc_out.num_tokens, lc_out.finish_reason)
