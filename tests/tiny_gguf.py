"""A tiny GGUF model for llama.cpp tests: the tiny random Qwen2
(:func:`ssb.testing.build_tiny_model`) written as an F32 GGUF with its byte-level BPE tokenizer
and ChatML template, so the llama.cpp backend, GGUF LoRA adapters and ``ssb run --backend
llama.cpp`` run in seconds.

The weights are stored as they are (llama.cpp's converter does not permute Qwen2's q/k), so
llama.cpp on this file computes what transformers computes on the HF directory, up to float
rounding."""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_gguf(model_dir: str | Path, out: str | Path) -> Path:
    """Write the HF Qwen2 model in ``model_dir`` as an F32 GGUF at ``out``; returns ``out``."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    model_dir, out = Path(model_dir), Path(out)
    cfg = json.loads((model_dir / "config.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_name("ssb-tiny-qwen2")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_block_count(int(cfg["num_hidden_layers"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_head_count_kv(int(cfg["num_key_value_heads"]))
    writer.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))

    tok = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    added = {t["id"]: t["content"] for t in tok.get("added_tokens", [])}
    size = int(cfg["vocab_size"])
    tokens, types = [], []
    by_id = {i: t for t, i in vocab.items()}
    for i in range(size):
        if i in added:
            tokens.append(added[i])
            types.append(gguf.TokenType.CONTROL)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(int(cfg["eos_token_id"]))
    writer.add_pad_token_id(int(cfg["pad_token_id"]))
    writer.add_add_bos_token(False)
    tcfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    template = tcfg.get("chat_template")
    if template is None and (model_dir / "chat_template.jinja").exists():
        template = (model_dir / "chat_template.jinja").read_text()
    writer.add_chat_template(template)

    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
             "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for key, value in sorted(weights.items()):
        value = np.ascontiguousarray(value, dtype=np.float32)
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        elif key == "lm_head.weight":
            name = "output.weight"
        else:
            parts = key.split(".")  # model.layers.N.<module>.<weight|bias>
            layer, module, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
            name = f"blk.{layer}.{names[module]}.{kind}"
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def make_it_stop(model_dir: str | Path, eos_logit: float = 0.25) -> Path:
    """Make the tiny random model end its answers (``<|im_end|>``) after a few tokens, as a chat
    model does, so curate's hinted solutions finish on their own (a truncated one is never
    kept) on every backend.  Residual dimensions 0 and 1 are reserved (written by no layer):
    dimension 1 is 1 in every embedding, dimension 0 only in those of tokens of ASCII letters
    and digits; the EOS row of the LM head reads only dimension 0 (logit ~``eos_logit`` * 5.7
    after such a token, 0 elsewhere; the rest are ~0: with top-k 50, P ~ 0.1 a token at T 0.8,
    ~0.4 at T 0.4), the other special tokens' rows read dimension 1 (never sampled).  So an
    answer ends only after visible text: never empty or blank once decoded."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    path = model_dir / "model.safetensors"
    w = {k: np.array(v) for k, v in load_file(str(path)).items()}
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    # EOS is boosted only right after a token of ASCII letters and digits, so an answer ends only
    # after visible text (a lone UTF-8 byte or a blank would leave it empty once decoded).
    visible = [i for t, i in tok["model"]["vocab"].items() if t.isascii() and t.isalnum()]
    emb = w["model.embed_tokens.weight"]
    emb[:, 0] = 0.0
    emb[visible, 0] = 1.0
    emb[:, 1] = 1.0  # dimension 1: always 1, so the other special tokens are never sampled
    for key in w:
        if key.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            w[key][:2, :] = 0.0  # no layer writes into dimensions 0 and 1
    eos = int(cfg["eos_token_id"])
    head = w["lm_head.weight"]
    head[:, :2] = 0.0
    head[eos, :] = 0.0
    head[eos, 0] = eos_logit
    for special in tok.get("added_tokens", []):
        if special["id"] != eos:
            head[special["id"], :] = 0.0
            head[special["id"], 1] = -2.0  # logit ~ -16: never among the top 50
    save_file(w, str(path), metadata={"format": "pt"})
    return model_dir
