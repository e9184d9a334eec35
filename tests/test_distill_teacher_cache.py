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
    assert small.lookup(keys, "cpu") is None  # the second example was not kept
    roomy = TeacherCache(max_bytes=1 << 20)
    roomy.store(keys, hidden)
    torch.testing.assert_close(roomy.lookup(keys, "cpu"), hidden)
    swapped = TeacherKeys(tuple(reversed(keys.keys)), (2, 1))
    torch.testing.assert_close(roomy.lookup(swapped, "cpu"), hidden[[1, 2, 0]])
    with pytest.raises(ValueError, match="3 rows"):
        roomy.store(TeacherKeys(keys.keys, (1, 1)), hidden)
