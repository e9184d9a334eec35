"""One distillation step, top to bottom: batch -> teacher signal -> student forward -> loss.

(The backward pass and the optimizer step are the Trainer's.)  Losses come from the registry by
name, so a plugin loss works exactly like a built-in one.  Every loss is a mean over solution
tokens (the :class:`ssb.types.Loss` contract), which is what lets the LM head and the losses run
on chunks of rows and be recombined exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ssb.errors import SsbError


@dataclass(frozen=True)
class LossTerm:
    name: str
    weight: float
    fn: Callable[..., torch.Tensor]
    params: dict[str, float] = field(default_factory=dict)
    needs_teacher: bool = True  # ssb.types.Loss.needs_teacher


def resolve_loss_terms(spec: str) -> list[LossTerm]:
    """``"kl=1,ce=0"`` -> terms whose functions come from the plugin registry."""
    from ssb.losses import parse_loss_spec
    from ssb.plugins import get_registry

    registry = get_registry()
    return [LossTerm(name, weight, registry.loss(name).fn, params,
                     needs_teacher=registry.loss(name).needs_teacher)
            for name, weight, params in parse_loss_spec(spec)]


def needs_teacher(terms: list[LossTerm]) -> bool:
    """Whether any term (weight 0 included: it is still computed and logged) reads the teacher."""
    return any(t.needs_teacher for t in terms)


@dataclass
class StepResult:
    loss: torch.Tensor  # weighted sum of token means over this batch, with grad (the Trainer
    # rescales it to this batch's share of the optimizer step's token mean)
    parts: dict[str, float]  # each term's value (detached), weight-0 terms included
    num_solution_tokens: int


def distill_step(model, batch: dict[str, torch.Tensor], terms: list[LossTerm], *,
                 temperature: float, teacher: str, logit_chunk: int = 256,
                 teacher_cache: Any = None) -> StepResult:
    """The loss of one batch (see the module docstring for the order of events)."""
    from ssb.stages.distill.forward import causal_lm_of, chunked_token_mean, model_hidden_at
    from ssb.losses import LossInputs, TopKTeacher
    from ssb.stages.distill.teacher import cached_teacher_hidden

    # 1. batch: flat indices of the positions predicting solution tokens, and those tokens.
    targets = batch["target_ids"]
    n = int(targets.shape[0])
    if n == 0:
        raise SsbError("a batch without solution tokens (all examples empty?)")

    # 2. teacher signal: hidden states [N, H] of the frozen base model (online; computed once
    #    per example when a TeacherCache is given), or top-k rows (offline).
    teacher_hidden = cached_teacher_hidden(model, batch, teacher_cache) \
        if teacher == "online" else None
    topk = (batch["topk_indices"], batch["topk_log_probs"], batch["topk_tail_log_mass"]) \
        if teacher == "offline" else (None, None, None)

    # 3. student forward: hidden states [N, H] at the same solution positions, with grad.
    student_hidden = model_hidden_at(model, batch["student_input_ids"],
                                     batch["student_attention_mask"],
                                     batch["student_position_ids"], batch["student_pred_index"])
    lm_head = causal_lm_of(model).get_output_embeddings()
    # The head runs outside the model's forward, hence outside mixed-precision autocast (which
    # also hands the forward's outputs back in fp32): run it in its own weight dtype, so bf16
    # weights give bf16 logits, and every loss upcasts those to fp32 (ssb.losses).
    head_dtype = lm_head.weight.dtype

    # 4. loss: vocabulary projections and losses on row chunks; parts = [each term's value].
    def parts_on_rows(h_s, h_t, target, top_idx, top_logp, top_tail):
        student_logits = lm_head(h_s.to(head_dtype))
        teacher_logits = None
        if h_t is not None:
            with torch.no_grad():
                teacher_logits = lm_head(h_t.to(head_dtype))
        teacher_topk = None
        if top_idx is not None:
            teacher_topk = TopKTeacher(top_idx, top_logp, top_tail, temperature)
        inputs = LossInputs(student_logits=student_logits, target_ids=target,
                            teacher_logits=teacher_logits, teacher_topk=teacher_topk,
                            temperature=temperature)
        return torch.stack([term.fn(inputs, **term.params).float().reshape(()) for term in terms])

    parts = chunked_token_mean(parts_on_rows, n, logit_chunk, student_hidden, teacher_hidden,
                               targets, *topk)
    weights = torch.tensor([t.weight for t in terms], dtype=parts.dtype, device=parts.device)
    loss = (parts * weights).sum()
    values = parts.detach().float().cpu().tolist()
    return StepResult(loss=loss, parts={t.name: v for t, v in zip(terms, values)},
                      num_solution_tokens=n)


def check_terms(terms: list[LossTerm], teacher: str) -> None:
    if teacher == "none" and needs_teacher(terms):
        names = ", ".join(t.name for t in terms if t.needs_teacher)
        raise SsbError(f"--loss {names} needs a teacher (--teacher online|offline)")
    if all(t.weight == 0 for t in terms):
        raise SsbError("--loss: every weight is 0, nothing to train on")


def describe_terms(terms: list[LossTerm]) -> list[dict[str, Any]]:
    return [{"name": t.name, "weight": t.weight, "params": t.params} for t in terms]
