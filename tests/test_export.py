"""peft LoRA -> llama.cpp GGUF LoRA adapter: format, scale semantics, errors, and (llama-marked)
the real small model giving the same greedy tokens through llama.cpp+adapter as through
transformers+peft, while the adapter visibly changes the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ssb.errors import SsbError

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def _random_lora(model_dir: str, out: Path, *, r: int = 4, alpha: float = 8, sigma: float = 0.05,
                 seed: int = 0, **config):
    """A peft LoRA on all seven projections with non-zero random A *and* B, saved to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=TARGETS, lora_dropout=0.0, **config)
    peft_model = get_peft_model(model, cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # peft initializes B to zero: make the adapter do something
                p.copy_(torch.randn(p.shape, generator=gen) * sigma)
    peft_model.save_pretrained(str(out))
    peft_model.eval()
    return peft_model


def _reader_fields(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    return {"fields": fields, "tensors": tensors, "shapes": shapes}


def _peft_delta(peft_model, layer: int, proj: str) -> np.ndarray:
    """The weight update peft applies to one projection: scaling * B @ A."""
    parent = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    module = getattr(getattr(peft_model.base_model.model.model.layers[layer], parent), proj)
    a = module.lora_A["default"].weight.detach().numpy().astype(np.float64)
    b = module.lora_B["default"].weight.detach().numpy().astype(np.float64)
    return module.scaling["default"] * (b @ a)


def _llama_delta(data: dict, layer: int, proj: str) -> np.ndarray:
    """The update llama.cpp applies from the GGUF: (alpha / r) * B @ A, r = lora_b's ne[0]."""
    name = f"blk.{layer}.{GGUF_NAMES[proj]}.weight"
    a = data["tensors"][name + ".lora_a"].astype(np.float64)
    b = data["tensors"][name + ".lora_b"].astype(np.float64)
    alpha = float(data["fields"]["adapter.lora.alpha"])
    r = data["shapes"][name + ".lora_b"][0]
    scale = alpha / r if alpha else 1.0
    return scale * (b @ a)


def test_export_writes_llama_cpp_lora_format(tiny_model_dir, tmp_path):
    from ssb.export import export_lora_to_gguf

    peft_model = _random_lora(str(tiny_model_dir), tmp_path / "lora", r=4, alpha=8)
    report = export_lora_to_gguf(tmp_path / "lora", tmp_path / "lora.gguf", base=tiny_model_dir)
    data = _reader_fields(tmp_path / "lora.gguf")

    assert data["fields"]["general.architecture"] == "qwen2"
    assert data["fields"]["general.type"] == "adapter"
    assert data["fields"]["adapter.type"] == "lora"
    assert data["fields"]["adapter.lora.alpha"] == pytest.approx(8.0)
    n_layers = peft_model.base_model.model.config.num_hidden_layers
    expected = {f"blk.{i}.{GGUF_NAMES[p]}.weight.lora_{ab}"
                for i in range(n_layers) for p in TARGETS for ab in "ab"}
    assert set(data["tensors"]) == expected
    assert report.tensors == len(expected) and report.rank == 4 and report.rescaled_modules == 0

    cfg = peft_model.base_model.model.config
    hidden, inter = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (hidden // cfg.num_attention_heads)
    # ggml ne order: lora_a is [n_in, r], lora_b is [r, n_out] (what llama-adapter.cpp checks).
    assert data["shapes"]["blk.0.attn_q.weight.lora_a"] == (hidden, 4)
    assert data["shapes"]["blk.0.attn_k.weight.lora_b"] == (4, kv)
    assert data["shapes"]["blk.1.ffn_down.weight.lora_a"] == (inter, 4)
    assert data["shapes"]["blk.1.ffn_down.weight.lora_b"] == (4, hidden)
    for layer in range(n_layers):
        for proj in TARGETS:
            np.testing.assert_allclose(_llama_delta(data, layer, proj),
                                       _peft_delta(peft_model, layer, proj), rtol=1e-6, atol=1e-9)


def test_export_rslora_and_alpha_pattern_keep_peft_scale(tiny_model_dir, tmp_path):
    """llama.cpp only knows alpha/r; rsLoRA (alpha/sqrt r) and per-module alphas are folded into
    lora_b so the effective update equals peft's."""
    from ssb.export import export_lora_to_gguf

    peft_model = _random_lora(str(tiny_model_dir), tmp_path / "lora", r=4, alpha=6,
                              use_rslora=True, alpha_pattern={"v_proj": 5.0})
    report = export_lora_to_gguf(tmp_path / "lora", tmp_path / "lora.gguf", base=tiny_model_dir)
    data = _reader_fields(tmp_path / "lora.gguf")
    assert report.rescaled_modules == report.modules  # every module's scale differs from 6/4
    for proj in ("q_proj", "v_proj", "down_proj"):
        delta = _peft_delta(peft_model, 1, proj)
        expected_scale = (5.0 if proj == "v_proj" else 6.0) / math.sqrt(4)
        module = getattr(peft_model.base_model.model.model.layers[1],
                         "mlp" if proj == "down_proj" else "self_attn"), proj
        assert getattr(*module).scaling["default"] == pytest.approx(expected_scale)
        np.testing.assert_allclose(_llama_delta(data, 1, proj), delta, rtol=1e-6, atol=1e-9)


def test_export_refuses_what_it_cannot_convert(tiny_model_dir, tmp_path):
    from ssb.export import export_lora_to_gguf

    with pytest.raises(SsbError, match="adapter_config.json"):
        export_lora_to_gguf(tmp_path, tmp_path / "x.gguf", base=tiny_model_dir)

    _random_lora(str(tiny_model_dir), tmp_path / "lora")
    cfg_path = tmp_path / "lora" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["use_dora"] = True
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(SsbError, match="DoRA"):
        export_lora_to_gguf(tmp_path / "lora", tmp_path / "x.gguf", base=tiny_model_dir)
    cfg["use_dora"] = False
    cfg["base_model_name_or_path"] = "some-org/not-local"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(SsbError, match="--base"):
        export_lora_to_gguf(tmp_path / "lora", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_export_checks_shapes_against_a_gguf_base(tiny_model_dir, small_gguf, tmp_path):
    """A tiny-model adapter exported against the real 0.5B GGUF is caught, not written."""
    from ssb.export import export_lora_to_gguf

    _random_lora(str(tiny_model_dir), tmp_path / "lora")
    with pytest.raises(SsbError, match="wrong base model"):
        export_lora_to_gguf(tmp_path / "lora", tmp_path / "x.gguf", base=small_gguf)
    assert not (tmp_path / "x.gguf").exists()


def test_export_cli(tiny_model_dir, tmp_path, ssb_cli):
    _random_lora(str(tiny_model_dir), tmp_path / "lora")
    code, out, err = ssb_cli("export", "--adapter", str(tmp_path / "lora"),
                             "--gguf", str(tmp_path / "out.gguf"), "--base", str(tiny_model_dir),
                             "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["architecture"] == "qwen2" and report["tensors"] == 28
    assert (tmp_path / "out.gguf").is_file()
    code, out, _ = ssb_cli("--help")
    assert code == 0 and "export" in out


@pytest.mark.llama
@pytest.mark.slow
def test_llama_cpp_adapter_matches_transformers_adapter(small_gguf, tmp_path):
    """The exported adapter makes llama.cpp (Q4_K_M base) compute what transformers+peft computes
    (dequantized fp32 base): identical greedy tokens, per-token KL far below what the adapter
    itself changes.

    Tolerances: the base model alone agrees 100% greedy with mean KL 0.0006 nats/token
    (shared/models.md); we require identical greedy tokens for all N steps and mean
    KL(llama+adapter || hf+adapter) < 0.005 nats/token, and that the adapter moves llama.cpp's
    distribution at least 10x further than that (KL(llama base || hf+adapter)), with at least
    one greedy token changed, so a silently ignored adapter fails.
    """
    llama_cpp = pytest.importorskip("llama_cpp")
    import torch
    from transformers import AutoTokenizer

    from ssb.export import export_lora_to_gguf
    from ssb.models import hf_dir

    base_dir = hf_dir(str(small_gguf))
    # r=8, alpha=16: a scale of 2, so an adapter loaded with the wrong alpha/r semantics is off.
    peft_model = _random_lora(base_dir, tmp_path / "lora", r=8, alpha=16, sigma=0.02, seed=1234)
    report = export_lora_to_gguf(tmp_path / "lora", tmp_path / "lora.gguf", base=small_gguf)
    assert report.layers == 24 and report.modules == 24 * 7

    tok = AutoTokenizer.from_pretrained(base_dir)
    prompts = ["What is 17 * 23? Answer briefly.",
               "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
               "clips in May. How many clips did Natalia sell altogether in April and May?"]
    steps = 16

    def prompt_ids(text: str) -> list[int]:
        ids = tok.apply_chat_template([{"role": "user", "content": text}],
                                      add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def llama_greedy(lora: str | None):
        kwargs = dict(model_path=str(small_gguf), n_ctx=512, n_threads=1, verbose=False,
                      logits_all=True)
        if lora:
            kwargs["lora_path"] = lora
        llm = llama_cpp.Llama(**kwargs)
        runs = []
        try:
            for text in prompts:
                ids = prompt_ids(text)
                llm.reset()
                llm.eval(ids)
                generated, logps = [], []
                for _ in range(steps):
                    row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
                    logps.append(row - np.logaddexp.reduce(row))
                    generated.append(int(row.argmax()))
                    llm.eval([generated[-1]])
                runs.append((ids, generated, np.stack(logps)))
        finally:
            llm.close()
        return runs

    with_adapter = llama_greedy(str(tmp_path / "lora.gguf"))
    base_only = llama_greedy(None)

    changed = 0
    for (ids, gen, llama_lp), (_, base_gen, base_lp) in zip(with_adapter, base_only):
        with torch.no_grad():
            logits = peft_model(torch.tensor([ids + gen])).logits[0]
        hf_lp = torch.log_softmax(logits[len(ids) - 1: len(ids) - 1 + steps].double(), -1).numpy()
        # transformers+peft's greedy choice after the same prefix, at every step.
        assert hf_lp.argmax(-1).tolist() == gen, tok.decode(gen)
        kl_adapter = (np.exp(llama_lp) * (llama_lp - hf_lp)).sum(-1).mean()
        kl_base = (np.exp(base_lp) * (base_lp - hf_lp)).sum(-1).mean()
        assert kl_adapter < 0.005, kl_adapter
        assert kl_base > 10 * kl_adapter, (kl_base, kl_adapter)
        changed += base_gen != gen
    assert changed >= 1, "the adapter did not change any greedy output"
