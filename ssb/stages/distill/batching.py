"""Batches of aligned examples: padded views plus the flat indices of the solution positions.

For example ``b`` with prompt length ``P``, padding offset ``o`` (left padding) and solution
token ``j``, the logit row that predicts the token is ``(b, o + P + j - 1)``; the collator emits
it as a flat index ``b * L + o + P + j - 1`` into the ``[B * L, H]`` hidden states.  Padding and
prompt positions never appear in these indices, so they never count in a loss.

Position ids are given explicitly (``cumsum(mask) - 1``) so left padding computes the very same
logits as right padding.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch.utils.data import Dataset

from ssb.stages.distill.alignment import AlignedExample
from ssb.stages.distill.teacher import TeacherKeys

PaddingSide = Literal["right", "left"]


class AlignedDataset(Dataset):
    """A list of :class:`AlignedExample` as a torch dataset (items are the examples)."""

    def __init__(self, examples: Sequence[AlignedExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> AlignedExample:
        return self.examples[i]


def pad_view(sequences: Sequence[Sequence[int]], prompt_lens: Sequence[int], pad_id: int,
             side: PaddingSide = "right") -> dict[str, torch.Tensor]:
    """Pad token id lists; returns input_ids, attention_mask, position_ids and ``pred_index``
    (flat indices of the positions whose logits predict each solution token, in order)."""
    width = max(len(s) for s in sequences)
    batch = len(sequences)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    pred: list[int] = []
    for b, (seq, prompt_len) in enumerate(zip(sequences, prompt_lens)):
        offset = width - len(seq) if side == "left" else 0
        input_ids[b, offset:offset + len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[b, offset:offset + len(seq)] = 1
        first = offset + prompt_len - 1  # logits here predict the first solution token
        pred.extend(range(b * width + first, b * width + offset + len(seq) - 1))
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids,
            "pred_index": torch.tensor(pred, dtype=torch.long)}


class DistillCollator:
    """Builds a training batch from aligned examples.

    Keys: ``student_*`` (always), ``teacher_*`` (online teacher, with ``teacher_keys``: what
    :class:`~ssb.stages.distill.teacher.TeacherCache` knows each example by), ``topk_*``
    (offline teacher: rows read from the memory-mapped store), ``target_ids`` and
    ``num_solution_tokens``.
    """

    def __init__(self, pad_id: int, *, teacher: str = "online", store: Any = None,
                 padding_side: PaddingSide = "right"):
        if teacher not in ("online", "offline", "none"):
            raise ValueError(f"teacher must be online, offline or none, got {teacher!r}")
        if teacher == "offline" and store is None:
            raise ValueError("an offline teacher needs a store")
        self.pad_id = pad_id
        self.teacher = teacher
        self.store = store
        self.padding_side = padding_side

    def __call__(self, examples: Sequence[AlignedExample]) -> dict[str, torch.Tensor]:
        student = pad_view([e.student_ids for e in examples],
                           [e.student_prompt_len for e in examples], self.pad_id,
                           self.padding_side)
        batch = {f"student_{k}": v for k, v in student.items()}
        targets = [t for e in examples for t in e.solution_ids]
        batch["target_ids"] = torch.tensor(targets, dtype=torch.long)
        batch["num_solution_tokens"] = torch.tensor(len(targets), dtype=torch.long)
        if self.teacher == "online":
            teacher = pad_view([e.teacher_ids for e in examples],
                               [e.teacher_prompt_len for e in examples], self.pad_id,
                               self.padding_side)
            batch.update({f"teacher_{k}": v for k, v in teacher.items()})
            batch["teacher_keys"] = TeacherKeys(
                tuple((e.teacher_ids, e.teacher_prompt_len) for e in examples),
                tuple(len(e.solution_ids) for e in examples))
        elif self.teacher == "offline":
            rows = [self.store.rows(e.id, e.solution_ids) for e in examples]
            batch["topk_indices"] = torch.cat([r.indices for r in rows]).long()
            batch["topk_log_probs"] = torch.cat([r.log_probs for r in rows]).float()
            batch["topk_tail_log_mass"] = torch.cat([r.tail_log_mass for r in rows]).float()
        return batch
