"""One optimizer step trains the mean over all its solution tokens, whatever the batching.

Batch 1 x accumulation 4, batch 2 x 2 and batch 4 x 1 over the same 4 examples (of very
different solution lengths) must give the same gradient, the same adapter and the same logged
loss as one direct token-mean over the 4 examples (the 2-process case is in
test_distill_distributed.py).  fp32 on CPU, LoRA dropout 0, no clipping.
"""

from __future__ import annotations

import json

import pytest
import torch

from test_alignment import make_record, write_curated

# Solutions of 6 to ~90 tokens: a per-example mean and a per-token mean differ a lot here.
SOLUTIONS = [
    "The answer is \\boxed{5}.",
    "First 4 + 4 = 8. Then 8 + 1 = 9. The answer is \\boxed{9}.",
    " ".join(f"Step {k}: 12 + {k} = {12 + k}." for k in range(12)) + " The answer is \\boxed{23}.",
    "So 3 * 4 = 12 and 12 / 2 = 6. The answer is \\boxed{6}.",
]
LORA_ALPHA = 16


def _config(curated, model, out, **overrides):
    from ssb.stages.distill.trainer import DistillConfig

    base = dict(curated=str(curated), model=str(model), out=str(out), lora_r=8,
                lora_alpha=LORA_ALPHA, lora_dropout=0.0, epochs=1.0, max_steps=1, lr=1e-2,
                temperature=2.0, loss="kl=1,ce=0.5", save_steps=1000, max_length=512,
                dtype="float32", max_grad_norm=1e9, logging_steps=1, seed=3)
    base.update(overrides)
    return DistillConfig(**base)


class GradientTap:
    """A TrainerCallback (made lazily) recording the LoRA gradients just before each optimizer
    step, and, before training, the gradients of two objectives computed directly."""

    def __init__(self, examples, pad_id):
        from transformers import TrainerCallback

        tap = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                tap.direct = {obj: tap.direct_gradient(model, obj) for obj in ("token", "example")}

            def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
                tap.steps.append(tap.grads(model))

        self.examples = examples
        self.pad_id = pad_id
        self.steps: list[dict[str, torch.Tensor]] = []
        self.direct: dict[str, dict[str, torch.Tensor]] = {}
        self.callback = Callback()

    @staticmethod
    def grads(model) -> dict[str, torch.Tensor]:
        return {n: p.grad.detach().clone() for n, p in model.named_parameters()
                if p.requires_grad and p.grad is not None}

    def direct_gradient(self, model, objective: str) -> dict[str, torch.Tensor]:
        """``token``: one batch of all examples, the step's token mean (what ssb trains).
        ``example``: the mean over examples of each example's token mean (the old behaviour at
        batch 1 x accumulation 4)."""
        from ssb.stages.distill.batching import DistillCollator
        from ssb.stages.distill.step import distill_step, resolve_loss_terms

        terms = resolve_loss_terms("kl=1,ce=0.5")
        collate = DistillCollator(self.pad_id, teacher="online")
        model.zero_grad(set_to_none=True)
        groups = [self.examples] if objective == "token" else [[e] for e in self.examples]
        for group in groups:
            loss = distill_step(model, collate(group), terms, temperature=2.0,
                                teacher="online").loss
            (loss / len(groups)).backward()
        grads = self.grads(model)
        model.zero_grad(set_to_none=True)
        return grads


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """(config name -> (gradient tap, metrics rows, adapter tensors)) for 1x4, 2x2 and 4x1."""
    from safetensors.torch import load_file

    from ssb.stages.distill.alignment import align_records
    from ssb.stages.distill.trainer import distill
    from ssb.models import load_tokenizer

    root = tmp_path_factory.mktemp("ga")
    records = [make_record(i, solution=s) for i, s in enumerate(SOLUTIONS)]
    curated = write_curated(root / "curated", records)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    examples, _ = align_records(tokenizer, records, max_length=512)
    lengths = [e.num_solution_tokens for e in examples]
    assert max(lengths) > 5 * min(lengths), lengths  # the test must tell the objectives apart
    out = {}
    for batch, accum in ((1, 4), (2, 2), (4, 1)):
        tap = GradientTap(examples, tokenizer.pad_token_id)
        run = root / f"b{batch}x{accum}"
        distill(_config(curated, tiny_model_dir, run, batch_size=batch, grad_accum=accum),
                callbacks=[tap.callback])
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        out[(batch, accum)] = (tap, rows, load_file(str(run / "adapter" /
                                                         "adapter_model.safetensors")))
    return out, sum(lengths)


def _close(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=key)


def _rel_diff(a: dict, b: dict) -> float:
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5
    return num / sum(float(a[k].pow(2).sum()) for k in a) ** 0.5


def test_the_test_data_tells_token_mean_from_example_mean(runs):
    out, _ = runs
    tap = out[(1, 4)][0]
    # The two objectives' gradients differ by far more than the tolerance used below.
    assert _rel_diff(tap.direct["token"], tap.direct["example"]) > 0.05


@pytest.mark.parametrize("shape", [(1, 4), (2, 2), (4, 1)])
def test_gradient_is_the_token_mean_of_the_whole_step(runs, shape):
    """Tolerance: rtol 1e-4, atol 1e-7 per gradient entry (fp32; summation order differs)."""
    out, _ = runs
    tap = out[shape][0]
    assert len(tap.steps) == 1
    # The LoRA B matrices start at zero, so at step one only they have a gradient.
    assert any(v.abs().sum() > 0 for v in tap.steps[0].values())
    _close(tap.steps[0], tap.direct["token"], rtol=1e-4, atol=1e-7)


def test_same_adapter_and_logged_loss_whatever_the_batching(runs):
    """Adapter tolerance: 1e-5 absolute = 1e-3 of the step size.  The first AdamW step is
    lr * g / (|g| + eps): entries whose gradient is near eps (1e-8) turn fp32 summation-order
    noise into up to ~1e-6 here (observed max 1.2e-6), the rest agree to ~1e-8."""
    out, total_tokens = runs
    reference_rows, reference_adapter = out[(4, 1)][1], out[(4, 1)][2]
    for shape in ((1, 4), (2, 2)):
        _, rows, adapter = out[shape]
        _close(adapter, reference_adapter, rtol=0, atol=1e-5)
        assert len(rows) == 1 and rows[0]["step"] == 1
        for key in ("loss", "loss_kl", "loss_ce"):
            assert rows[0][key] == pytest.approx(reference_rows[0][key], rel=1e-5), key
        assert rows[0]["solution_tokens"] == total_tokens
    row = reference_rows[0]
    # The logged loss is the weighted sum of the logged parts (token means of the same step).
    assert row["loss"] == pytest.approx(row["loss_kl"] + 0.5 * row["loss_ce"], rel=1e-5)
