"""Vocabulary projections at solution positions only.

A causal LM's body gives ``[B, L, H]`` hidden states; we pick the ``N`` rows that predict
solution tokens (``[N, H]``) and apply the LM head there, in chunks.  No ``[B, L, V]`` tensor is
ever built, for the teacher or the student.
"""

from __future__ import annotations

from typing import Callable

import torch


def causal_lm_of(model):
    """The ``*ForCausalLM`` module under DDP / accelerate / peft wrappers."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def body_hidden_at(causal_lm, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   position_ids: torch.Tensor, pred_index: torch.Tensor) -> torch.Tensor:
    """Final (normed) hidden states ``[N, H]`` of the decoder body at flat ``pred_index``
    (runs the body only; the LM head is not applied)."""
    body = causal_lm.get_decoder()
    out = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
               use_cache=False)
    hidden = out.last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, pred_index)


def model_hidden_at(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor, pred_index: torch.Tensor) -> torch.Tensor:
    """Like :func:`body_hidden_at` but through the (possibly DDP-wrapped) model's own forward,
    so distributed training hooks see the call.  ``logits_to_keep=1`` keeps the head's output
    to one position per row."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=False, output_hidden_states=True, logits_to_keep=1)
    hidden = out.hidden_states[-1]  # == the body's normed last_hidden_state
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, pred_index)


def chunked_token_mean(fn: Callable[..., torch.Tensor], n: int, chunk: int,
                       *tensors: torch.Tensor | None, checkpoint: bool = True) -> torch.Tensor:
    """``fn(*rows)`` for a mean-over-tokens function, computed on row chunks and recombined
    exactly: ``sum_c fn(chunk_c) * n_c / n``.

    With ``checkpoint`` (and grad enabled) each chunk is recomputed in backward, so only one
    chunk's ``[chunk, V]`` logits are alive at a time; only the ``[N, H]`` inputs are kept.
    """
    if n <= chunk:
        return fn(*tensors)
    total: torch.Tensor | None = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rows = [t[start:stop] if t is not None else None for t in tensors]
        if checkpoint and torch.is_grad_enabled():
            part = torch.utils.checkpoint.checkpoint(fn, *rows, use_reentrant=False)
        else:
            part = fn(*rows)
        part = part * ((stop - start) / n)
        total = part if total is None else total + part
    assert total is not None
    return total
