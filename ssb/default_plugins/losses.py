"""The built-in distillation losses, registered through the same hook a plugin would use.

``ssb.losses`` imports torch, so the registered callables import it only when a loss runs.
"""

from __future__ import annotations

from ssb.hookspecs import hookimpl
from ssb.types import Loss

_DESCRIPTIONS = {
    "kl": "forward KL(teacher || student) x T^2 (the SSB loss)",
    "rkl": "reverse KL(student || teacher) x T^2",
    "jsd": "generalized Jensen-Shannon divergence JSD(beta) x T^2 (beta=0.5)",
    "ce": "cross-entropy on the solution tokens (SFT), temperature 1",
}


def _lazy(name: str):
    def fn(inputs, **params):
        from ssb import losses

        return losses.BUILTIN[name](inputs, **params)

    fn.__name__ = f"loss_{name}"
    return fn


@hookimpl
def register_losses(register):
    for name, description in _DESCRIPTIONS.items():
        # Cross-entropy reads only the solution tokens: it trains with --teacher none.
        register(Loss(name=name, fn=_lazy(name), description=description,
                      needs_teacher=name != "ce"))
