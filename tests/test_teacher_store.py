"""The offline top-k teacher store: round trip, checks, CLI build, online vs offline agreement."""

from __future__ import annotations

import json

import pytest
import torch

from ssb.errors import SsbError
from test_alignment import make_record, write_curated


def _rows(n: int, vocab: int, k: int, T: float, seed: int):
    from ssb.stages.distill.teacher import topk_from_logits

    g = torch.Generator().manual_seed(seed)
    return topk_from_logits(torch.randn(n, vocab, generator=g) * 4, k, T)


def test_store_round_trip_across_shards_is_memory_mapped_and_small(tmp_path):
    from safetensors import safe_open

    from ssb.stages.distill.teacher import INDEX, TopKStore, TopKStoreWriter, bytes_per_token

    k = 64
    writer = TopKStoreWriter(tmp_path / "s", {"top_k": k, "temperature": 2.0, "vocab_size": 500},
                             shard_tokens=30)
    written = {}
    for i, n in enumerate([7, 25, 3, 40, 11]):
        rows = _rows(n, 500, k, 2.0, i)
        ids = list(range(i, i + n))
        writer.add(f"ex{i}", ids, rows)
        written[f"ex{i}"] = (ids, rows)
    with pytest.raises(SsbError, match="incomplete"):
        TopKStore(tmp_path / "s")
    writer.finish()
    index = json.loads((tmp_path / "s" / INDEX).read_text())
    assert len(index["shards"]) >= 3 and index["num_tokens"] == 86
    store = TopKStore(tmp_path / "s")
    for key, (ids, rows) in written.items():
        got = store.rows(key, ids)
        assert torch.equal(got.indices.long(), rows.indices)
        torch.testing.assert_close(got.log_probs.float(), rows.log_probs, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(got.tail_log_mass, rows.tail_log_mass.float())
        prefix = store.rows(key, ids[:2])  # training may cut more than the store did
        assert prefix.indices.shape == (2, k)
    with pytest.raises(SsbError, match="differ"):
        store.rows("ex0", [99] * 7)
    with pytest.raises(SsbError, match="no teacher rows"):
        store.rows("nope")
    # <= 400 bytes per token at k = 64, and the files are that size (plus small headers).
    assert bytes_per_token(64) == 392 <= 400
    payload = sum((tmp_path / "s" / name).stat().st_size for name in index["shards"])
    assert payload < 86 * 392 + 2000 * len(index["shards"])
    with safe_open(str(tmp_path / "s" / index["shards"][0]), framework="pt") as f:
        assert f.get_slice("log_probs").get_dtype() == "F16"
        assert f.get_slice("indices").get_dtype() == "I32"
    assert not list((tmp_path / "s").glob("*.bin")) and not list((tmp_path / "s").glob("*.pt"))


def test_topk_rows_tail_is_exact_in_float64():
    from ssb.stages.distill.teacher import topk_from_logits

    logits = torch.randn(5, 300, dtype=torch.float64) * 5
    rows = topk_from_logits(logits, 10, 2.0)
    p = torch.softmax(logits / 2.0, -1)
    top_mass = p.gather(-1, rows.indices).sum(-1)
    torch.testing.assert_close(rows.tail_log_mass.exp(), 1 - top_mass, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(rows.log_probs.exp(), p.gather(-1, rows.indices))


@pytest.fixture(scope="module")
def built_store(tiny_model_dir, tmp_path_factory):
    """A curated file and stores at k = vocab and k = 64, T = 2, built through the CLI."""
    from typer.testing import CliRunner

    from ssb.cli import build_app

    root = tmp_path_factory.mktemp("store")
    curated = write_curated(root / "curated", [make_record(i) for i in range(4)])
    stores = {}
    for k in (100_000, 256):
        out = root / f"store-k{k}"
        result = CliRunner().invoke(build_app(), [
            "teacher-logits", "--curated", str(curated), "--model", str(tiny_model_dir),
            "--top-k", str(k), "--temperature", "2", "--out", str(out), "--batch-size", "3",
            "--no-progress"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["examples"] == 4
        stores[k] = out
    return curated, stores


def _student_and_batch(tiny_model_dir, curated, teacher, store=None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ssb.stages.distill.alignment import align_records, load_curated
    from ssb.stages.distill.batching import DistillCollator
    from ssb.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():  # a trained-looking adapter: the student clearly differs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    examples, _ = align_records(tok, load_curated(curated))
    batch = DistillCollator(tok.pad_token_id, teacher=teacher, store=store)(examples)
    return model.eval(), batch


@pytest.mark.parametrize("loss", ["kl=1", "rkl=1", "jsd=1"])
def test_offline_store_agrees_with_online_teacher(tiny_model_dir, built_store, loss):
    from ssb.stages.distill.step import distill_step, resolve_loss_terms
    from ssb.stages.distill.teacher import TopKStore

    curated, stores = built_store
    terms = resolve_loss_terms(loss)
    model, online_batch = _student_and_batch(tiny_model_dir, curated, "online")
    online = distill_step(model, online_batch, terms, temperature=2.0, teacher="online").loss
    assert online.item() > 1e-3  # the adapted student really differs from the teacher
    grads = {}
    for k in (100_000, 256):
        store = TopKStore(stores[k])
        _, batch = _student_and_batch(tiny_model_dir, curated, "offline", store)
        model.zero_grad()
        offline = distill_step(model, batch, terms, temperature=2.0, teacher="offline").loss
        offline.backward()
        grads[k] = torch.cat([p.grad.reshape(-1) for p in model.parameters()
                              if p.grad is not None])
        if k == 100_000:
            # k = vocabulary: the same loss up to the float16 log-probs (~1e-3 relative).
            assert offline.item() == pytest.approx(online.item(), rel=3e-3)
        else:
            # k = 256 of ~500 on a near-uniform random teacher (the worst case): the binned
            # KL is a lower bound of the exact one and keeps most of it.
            assert 0.5 * online.item() < offline.item() <= online.item() * (1 + 3e-3)
    model.zero_grad()
    distill_step(model, online_batch, terms, temperature=2.0, teacher="online").loss.backward()
    exact = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    cosine = torch.nn.functional.cosine_similarity(grads[100_000], exact, dim=0)
    assert cosine.item() > 0.999
    assert (grads[100_000] - exact).norm() / exact.norm() < 0.02


def test_store_refuses_mismatched_temperature_curated_or_tokenizer(tiny_model_dir, built_store,
                                                                   tmp_path):
    from ssb.stage import sha256_file
    from ssb.models import load_tokenizer
    from ssb.stages.distill.teacher import TopKStore, tokenizer_fingerprint

    curated, stores = built_store
    store = TopKStore(stores[256])
    tok = load_tokenizer(str(tiny_model_dir))
    vocab = store.index["vocab_size"]
    good = dict(temperature=2.0, vocab_size=vocab, tokenizer_sha256=tokenizer_fingerprint(tok),
                curated_sha256=sha256_file(curated / "curated.jsonl"))
    store.check_compatible(**good)
    with pytest.raises(SsbError, match="temperature"):
        store.check_compatible(**{**good, "temperature": 1.0})
    with pytest.raises(SsbError, match="curated"):
        store.check_compatible(**{**good, "curated_sha256": "0" * 64})
    with pytest.raises(SsbError, match="tokenizer"):
        store.check_compatible(**{**good, "tokenizer_sha256": "0" * 64})
    with pytest.raises(SsbError, match="vocabulary"):
        store.check_compatible(**{**good, "vocab_size": vocab + 1})


def test_interrupted_store_build_resumes_to_the_same_store(tiny_model_dir, built_store, tmp_path):
    from ssb.stages.distill.teacher import INDEX, TopKStore, build_store

    curated, stores = built_store
    out = tmp_path / "resumed"
    calls = []

    def stop_after_first_batch(n):
        calls.append(n)
        raise KeyboardInterrupt

    # one shard per example: the first batch is on disk when the build is interrupted
    with pytest.raises(KeyboardInterrupt):
        build_store(curated, str(tiny_model_dir), out, top_k=256, temperature=2.0,
                    batch_size=2, shard_tokens=1, progress=stop_after_first_batch)
    partial = json.loads((out / INDEX).read_text())
    assert not partial["complete"] and len(partial["examples"]) == 2
    summary = build_store(curated, str(tiny_model_dir), out, top_k=256, temperature=2.0,
                          batch_size=2)
    assert summary["examples"] == 4
    fresh, resumed = TopKStore(stores[256]), TopKStore(out)
    for key in fresh.index["examples"]:
        a, b = fresh.rows(key), resumed.rows(key)
        assert torch.equal(a.indices, b.indices)
        torch.testing.assert_close(a.log_probs, b.log_probs, rtol=0, atol=2e-3)
