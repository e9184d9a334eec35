"""The online teacher's hidden states are computed once per example (TeacherCache): a 3-epoch run
with the cache trains the same adapter, logs the same losses and the same held-out curve as one
that recomputes the teacher every step, while running the teacher forward only in the first
epoch (and at the first held-out measurement).  fp32 on CPU, LoRA dropout 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_alignment import make_record, write_curated
from test_distill import _adapter_tensors, _config


class DecoderCalls:
    """Counts the decoder body's forward calls (student and teacher alike) during training."""

    def __init__(self):
        from transformers import TrainerCallback

        counter = self
        self.calls = 0

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                from ssb.stages.distill.forward import causal_lm_of

                def hook(module, inputs, output):
                    counter.calls += 1

                causal_lm_of(model).get_decoder().register_forward_hook(hook)

        self.callback = Callback()


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    from ssb.stages.distill.trainer import distill

    root = tmp_path_factory.mktemp("teacher-cache")
    curated = write_curated(root / "curated", [make_record(i) for i in range(4)])
    held = write_curated(root / "held", [make_record(i) for i in range(4, 6)])
    out = {}
    for name, gib in (("recompute", 0.0), ("cached", 1.0)):
        cfg = _config(curated, tiny_model_dir, root / name, epochs=3.0, lr=5e-3,
                      loss="kl=1,ce=0.5", dtype="float32", eval_records=str(held),
                      eval_steps=2, teacher_cache_gib=gib, seed=5)
        calls = DecoderCalls()
        summary = distill(cfg, callbacks=[calls.callback]).summary
        out[name] = (Path(cfg.out), summary, calls.calls)
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cached_teacher_trains_the_same_adapter_and_curves(runs):
    (a, sa, _), (b, _, _) = runs["recompute"], runs["cached"]
    la, lb = _rows(a / "metrics.jsonl"), _rows(b / "metrics.jsonl")
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(1, 7))
    for ra, rb in zip(la, lb):
        assert rb["loss_kl"] == pytest.approx(ra["loss_kl"], rel=1e-4, abs=1e-6)
        assert rb["loss_ce"] == pytest.approx(ra["loss_ce"], rel=1e-4, abs=1e-6)
    assert len({round(r["loss"], 6) for r in la}) > 3  # the losses move: it trained
    ha, hb = _rows(a / "heldout.jsonl"), _rows(b / "heldout.jsonl")
    assert [r["step"] for r in ha] == [r["step"] for r in hb] == [0, 2, 4, 6]
    for ra, rb in zip(ha, hb):
        assert rb["kl"] == pytest.approx(ra["kl"], rel=1e-4, abs=1e-6)
    ta, tb = _adapter_tensors(a / "adapter"), _adapter_tensors(b / "adapter")
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(tb[k], ta[k], rtol=1e-4, atol=1e-5)
    # B starts at zero: a trained adapter has moved it, so the comparison means something.
    assert max(float(t.abs().max()) for k, t in ta.items() if "lora_B" in k) > 1e-4
    assert sa["teacher_cache"] is None


def test_teacher_forward_runs_only_until_every_example_is_cached(runs):
    (_, _, calls_a), (_, sb, calls_b) = runs["recompute"], runs["cached"]
    cache = sb["teacher_cache"]
    # 4 train examples in batches of 2: epoch 1 computes 2 batches, epochs 2-3 read 4; the
    # held-out pair (one batch) is computed at step 0 and read at steps 2, 4, 6.
    assert cache["examples"] == 6 and not cache["full"]
    assert (cache["misses"], cache["hits"]) == (3, 7)
    assert cache["bytes"] > 0
    # Every hit is one teacher forward of the decoder body that did not run.
    assert calls_a - calls_b == cache["hits"], (calls_a, calls_b)


def test_cache_holds_nothing_past_its_budget_and_refuses_mismatched_rows():
    from ssb.stages.distill.teacher import TeacherCache, TeacherKeys

    keys = TeacherKeys((((1, 2, 3), 2), ((4, 5, 6, 7), 2)), (1, 2))
    hidden = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    small = TeacherCache(max_bytes=4 * 4)  # room for one row of 4 floats: the first example
    small.store(keys, hidden)
    assert small.full and small.summary()["examples"] == 1 and small.bytes == 16
    first, second = small.lookup(keys)
    torch.testing.assert_close(first, hidden[:1])
    assert second is None  # the second example was not kept
    roomy = TeacherCache(max_bytes=1 << 20)
    roomy.store(keys, hidden)
    swapped = TeacherKeys(tuple(reversed(keys.keys)), (2, 1))
    torch.testing.assert_close(torch.cat(roomy.lookup(swapped)), hidden[[1, 2, 0]])
    with pytest.raises(ValueError, match="3 rows"):
        roomy.store(TeacherKeys(keys.keys, (1, 1)), hidden)


def test_a_batch_runs_the_teacher_only_on_the_examples_the_cache_lacks(tiny_model_dir):
    """Examples cached from other batches (another epoch's shuffle, another process's share)
    are read; the teacher runs on a sub-batch of the rest, and every row is what the whole
    batch's teacher forward gives, in the batch's order."""
    from peft import LoraConfig, get_peft_model

    from ssb.models import load_causal_lm, load_tokenizer
    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.batching import DistillCollator
    from ssb.stages.distill.teacher import (TeacherCache, cached_teacher_hidden,
                                            online_teacher_hidden)

    tok = load_tokenizer(str(tiny_model_dir))
    examples, _ = align_records(tok, [make_record(i) for i in range(4)], max_length=512)
    model = get_peft_model(load_causal_lm(str(tiny_model_dir), dtype="float32"),
                           LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    collate = DistillCollator(tok.pad_token_id, teacher="online")
    whole = collate(examples)
    want = online_teacher_hidden(model, whole)
    cache = TeacherCache(1 << 30)
    cached_teacher_hidden(model, collate([examples[1], examples[3]]), cache)  # another batch
    calls = []
    body = model.get_base_model().get_decoder()
    handle = body.register_forward_hook(
        lambda m, args, kwargs, o: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        got = cached_teacher_hidden(model, whole, cache)
    finally:
        handle.remove()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert calls == [2]  # one teacher forward, on the two examples the cache lacked
    assert cache.summary()["computed_examples"] == 4 and cache.summary()["examples"] == 4
    assert (cache.hits, cache.misses) == (0, 2)
    torch.testing.assert_close(cached_teacher_hidden(model, whole, cache), want,
                               rtol=1e-5, atol=1e-5)
    assert cache.hits == 1
