r"""Distillation losses: pure functions over solution-token rows.

Every loss sees :class:`LossInputs`: the student's raw logits at the N solution positions
(``[N, V]``), the N target token ids, and the teacher signal at the same positions, either
dense logits (online teacher, ``[N, V]``) or a top-k store (offline teacher: ``[N, k]`` indices and
log-probs taken at temperature ``T_store`` plus the log of the tail mass outside the top k).

Both are turned into distributions over the same *bins* by :func:`binned_log_probs`:

* dense: the V vocabulary entries, ``log softmax(z / T)``;
* top-k: the k teacher tokens plus one tail bin; the student's tail bin is
  ``log(1 - sum_k p_s)``, computed as ``logsumexp`` over the non-top-k entries for stability
  (no tail bin when k equals the vocabulary size).

The KL of the (k+1)-bin coarsening lower-bounds the full KL (data-processing inequality) and
equals it as k -> V.  The losses (mean over tokens; KL terms multiplied by T^2 so their gradient
scale does not shrink with T, as in Hinton et al.):

* ``kl``  forward  KL(p_t || p_s) = sum_i p_t,i (log p_t,i - log p_s,i)
* ``rkl`` reverse  KL(p_s || p_t)
* ``jsd`` generalized JSD_beta = beta KL(p_t || m) + (1 - beta) KL(p_s || m),
  m = beta p_t + (1 - beta) p_s  (beta = 0.5: the symmetric JSD; as in GKD)
* ``ce``  cross-entropy -log p_s(y) of the solution tokens at temperature 1 (SFT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssb.errors import SsbError


@dataclass
class TopKTeacher:
    """Offline teacher rows: ``indices`` [N, k] (long), ``log_probs`` [N, k] at ``temperature``,
    ``tail_log_mass`` [N] = log(1 - sum exp(log_probs)) (``-inf`` when the top k hold it all)."""

    indices: torch.Tensor
    log_probs: torch.Tensor
    tail_log_mass: torch.Tensor
    temperature: float


@dataclass
class LossInputs:
    student_logits: torch.Tensor  # [N, V], raw, solution positions only
    target_ids: torch.Tensor  # [N]
    teacher_logits: torch.Tensor | None = None  # [N, V] dense (online)
    teacher_topk: TopKTeacher | None = None  # sparse (offline)
    temperature: float = 1.0


def binned_log_probs(inputs: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(student, teacher) log-probabilities over common bins, both at ``inputs.temperature``,
    computed in float32 (or float64 if the student logits are float64)."""
    T = inputs.temperature
    dtype = torch.float64 if inputs.student_logits.dtype == torch.float64 else torch.float32
    s_logp = F.log_softmax(inputs.student_logits.to(dtype) / T, dim=-1)
    if inputs.teacher_logits is not None:
        t_logp = F.log_softmax(inputs.teacher_logits.to(dtype) / T, dim=-1)
        return s_logp, t_logp
    top = inputs.teacher_topk
    if top is None:
        raise SsbError("LossInputs needs teacher_logits or teacher_topk")
    if abs(top.temperature - T) > 1e-6:
        raise SsbError(
            f"the teacher store was taken at temperature {top.temperature}, but the loss runs at "
            f"{T}; rebuild it with `ssb teacher-logits --temperature {T}`"
        )
    idx = top.indices.to(s_logp.device).long()
    s_top = s_logp.gather(-1, idx)
    t_top = top.log_probs.to(device=s_logp.device, dtype=dtype)
    if idx.shape[-1] >= s_logp.shape[-1]:
        return s_top, t_top  # the top k are the whole vocabulary: no tail bin
    # Student tail: logsumexp over the entries outside the top k.  Exact where the top k hold
    # almost all the mass (log(1 - sum p) would round 1 - 1e-9 to 0 in float32).
    s_tail = torch.logsumexp(s_logp.scatter(-1, idx, float("-inf")), dim=-1)
    t_tail = top.tail_log_mass.to(device=s_logp.device, dtype=dtype)
    return (torch.cat([s_top, s_tail[:, None]], dim=-1),
            torch.cat([t_top, t_tail[:, None]], dim=-1))


def _kl_rows(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """Per-row KL(p || q) from log-probs; bins where p = 0 contribute 0."""
    p = p_log.exp()
    terms = torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p))
    return terms.sum(-1)


def forward_kl(inputs: LossInputs) -> torch.Tensor:
    s, t = binned_log_probs(inputs)
    return _kl_rows(t, s).mean() * inputs.temperature**2


def reverse_kl(inputs: LossInputs) -> torch.Tensor:
    s, t = binned_log_probs(inputs)
    return _kl_rows(s, t).mean() * inputs.temperature**2


def jsd(inputs: LossInputs, beta: float = 0.5) -> torch.Tensor:
    beta = float(beta)
    if not 0.0 < beta < 1.0:
        # At 0 or 1 the mixture equals one side and JSD is identically 0 (no gradient).
        raise SsbError(f"jsd beta must be strictly between 0 and 1, got {beta} "
                       "(use kl or rkl for the one-sided divergences)")
    s, t = binned_log_probs(inputs)
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), dim=0)
    value = beta * _kl_rows(t, m) + (1 - beta) * _kl_rows(s, m)
    return value.mean() * inputs.temperature**2


def cross_entropy(inputs: LossInputs) -> torch.Tensor:
    logits = inputs.student_logits
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return F.cross_entropy(logits, inputs.target_ids.to(logits.device))


def check_loss_params(name: str, fn, params: dict[str, float]) -> None:
    """Refuse, while the config is checked (before any output exists), parameters that a loss
    does not take or refuses.  Found in training, they failed the first step and left a manifest
    that refused the corrected command.  The loss runs once on a small random input with them,
    after once without (a loss that needs inputs this probe lacks is not judged here)."""
    if not params:
        return
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        known = [p.name for p in list(sig.parameters.values())[1:]
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SsbError(f"--loss: {name} has no parameter {unknown[0]!r} "
                           f"(its parameters: {', '.join(known) or 'none'})")
    gen = torch.Generator().manual_seed(0)
    probe = LossInputs(student_logits=torch.randn(4, 16, generator=gen),
                       target_ids=torch.randint(0, 16, (4,), generator=gen),
                       teacher_logits=torch.randn(4, 16, generator=gen))
    with torch.no_grad():
        try:
            fn(probe)
        except Exception:  # noqa: BLE001 - the probe does not suit this loss: not judged
            return
        try:
            value = torch.as_tensor(fn(probe, **params))
        except SsbError as exc:
            raise SsbError(f"--loss {name}: {exc}") from None
        except (TypeError, ValueError, ArithmeticError, RuntimeError) as exc:
            raise SsbError(f"--loss {name} with {params}: {type(exc).__name__}: {exc}") from None
    if not bool(torch.isfinite(value).all()):
        raise SsbError(f"--loss {name} with {params} gives a non-finite loss")


BUILTIN = {"kl": forward_kl, "rkl": reverse_kl, "jsd": jsd, "ce": cross_entropy}


def parse_loss_spec(spec: str) -> list[tuple[str, float, dict[str, float]]]:
    """``"kl=1,ce=0.5"`` -> [(name, weight, params)]; ``"jsd=1,jsd.beta=0.3"`` sets a parameter.

    Comma-separated ``name=weight`` (a bare ``name`` weighs 1) and ``name.param=value`` items.
    Terms with weight 0 are kept (they are logged but add nothing to the gradient).
    """
    weights: dict[str, float] = {}
    params: dict[str, dict[str, float]] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        try:
            number = float(value) if eq else 1.0
        except ValueError:
            raise SsbError(f"--loss: {part!r} needs a number after '=' (e.g. kl=1,ce=0.5)") from None
        if not math.isfinite(number):
            raise SsbError(f"--loss: {part!r} is not a finite number")
        if "." in key:
            name, _, param = key.partition(".")
            params.setdefault(name, {})[param] = number
        else:
            if key in weights:
                raise SsbError(f"--loss: {key!r} given twice")
            if number < 0:
                raise SsbError(f"--loss: weight of {key!r} must be >= 0, got {number}")
            weights[key] = number
    for name in params:
        if name not in weights:
            raise SsbError(f"--loss: parameter given for {name!r} but {name!r} has no weight")
    if not weights:
        raise SsbError("--loss is empty; expected e.g. kl=1,ce=0")
    return [(name, w, params.get(name, {})) for name, w in weights.items()]
