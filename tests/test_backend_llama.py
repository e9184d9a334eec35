"""The llama.cpp backend on the real small model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M)."""

from __future__ import annotations

import json

import pytest

from ssb.errors import MissingDependency, SsbError
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
]


@pytest.fixture(scope="module")
def llama(small_gguf):
    pytest.importorskip("llama_cpp")
    b = get_registry().backend("llama.cpp").create(str(small_gguf), n_threads=2, n_ctx=1024)
    yield b
    b.close()


def _texts(result):
    return [[c.text for c in per] for per in result]


def test_greedy_batch_answers_and_uses_the_models_chat_template(llama):
    res = llama.generate(CONVS[:2], SamplingParams(n=2, temperature=0.0, max_new_tokens=24))
    assert len(res) == 2 and all(len(per) == 2 for per in res)
    assert res[0][0].text == res[0][1].text  # greedy: n copies
    # A real instruct model through its own ChatML template answers the question.
    assert "56" in res[0][0].text
    assert "<|im_end|>" not in res[0][0].text and "<|im_start|>" not in res[0][0].text
    assert res[0][0].finish_reason == "stop" and 0 < res[0][0].num_tokens < 24


def test_seeded_samples_reproducible_distinct_and_batch_independent(llama):
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=20, seed=11)
    seen = []
    first = llama.generate(CONVS[:2], params, progress=seen.append)
    again = llama.generate(CONVS[:2], params)
    assert _texts(first) == _texts(again)
    assert sum(seen) == 6
    # The n samples of one conversation use distinct seeds.
    assert any(len(set(per)) > 1 for per in _texts(first))
    # Seeds are per conversation: the second conversation alone samples the same texts.
    alone = llama.generate([CONVS[1]], params)
    assert _texts(alone)[0] == _texts(first)[1]
    other = llama.generate(CONVS[:2], SamplingParams(**{**params.to_dict(), "seed": 12}))
    assert _texts(other) != _texts(first)


def test_length_and_stop_finish_reasons(llama):
    long = llama.generate([CONVS[2]], SamplingParams(temperature=0.0, max_new_tokens=8))[0][0]
    assert long.finish_reason == "length" and long.num_tokens == 8
    full = llama.generate([CONVS[0]], SamplingParams(temperature=0.0, max_new_tokens=24))[0][0]
    assert "56" in full.text
    cut = llama.generate([CONVS[0]], SamplingParams(temperature=0.0, max_new_tokens=24,
                                                    stop=["56"]))[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:full.text.index("56")]
    assert cut.num_tokens < full.num_tokens


def test_context_overflow_is_a_clear_error(llama):
    huge = [{"role": "user", "content": "count: " + " ".join(str(i) for i in range(2000))}]
    with pytest.raises(SsbError, match="n_ctx"):
        llama.generate([huge], SamplingParams(max_new_tokens=4))


def test_bad_model_and_adapter_are_clear_errors(small_gguf, tiny_model_dir, tmp_path):
    pytest.importorskip("llama_cpp")
    factory = get_registry().backend("llama.cpp")
    with pytest.raises(SsbError, match="needs a .gguf model"):
        factory.create(str(tiny_model_dir))
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(SsbError, match="GGUF LoRA"):
        factory.create(str(small_gguf), adapter=str(tmp_path))
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(SsbError, match="could not load: not a GGUF file"):
        factory.create(str(small_gguf), adapter=str(bogus), n_ctx=256)
    # A real GGUF that is a model, not an adapter, must not be "applied" silently.
    with pytest.raises(SsbError, match="not a LoRA adapter"):
        factory.create(str(small_gguf), adapter=str(small_gguf), n_ctx=256)
    with pytest.raises(SsbError, match="unknown option"):
        factory.create(str(small_gguf), device="cpu")


def test_missing_llama_cpp_names_the_extra(monkeypatch, small_gguf):
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(MissingDependency, match=r"softboot-backends\[llama\]"):
        get_registry().backend("llama.cpp").create(str(small_gguf))


def test_generate_command_on_llama(ssb_cli, small_gguf):
    code, out, err = ssb_cli("generate", "--backend", "llama.cpp", "--model", str(small_gguf),
                             "--prompt", "What is 7 * 8?", "--system", "Answer briefly.",
                             "--max-tokens", "16", "--json", "-B", "n_threads=2",
                             "-B", "n_ctx=512")
    assert code == 0, err
    data = json.loads(out.strip().splitlines()[-1])
    assert "56" in data["completions"][0]["text"]


def test_gguf_lora_adapter_is_applied(small_gguf, tmp_path):
    """A LoRA in peft's file format (random weights shaped for the small model's attention),
    exported by `ssb export` to a GGUF LoRA: llama.cpp applies it (greedy text changes), and
    at lora_scale=0 the output is the base model's again."""
    pytest.importorskip("llama_cpp")
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

    factory = get_registry().backend("llama.cpp")
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    outputs = {}
    for label, kwargs in {"base": {}, "lora": {"adapter": str(lora)},
                          "lora_off": {"adapter": str(lora), "lora_scale": 0.0}}.items():
        b = factory.create(str(small_gguf), n_threads=2, n_ctx=512, **kwargs)
        try:
            outputs[label] = b.generate([CONVS[0]], params)[0][0].text
        finally:
            b.close()
    assert outputs["lora"] != outputs["base"]
    assert outputs["lora_off"] == outputs["base"]
