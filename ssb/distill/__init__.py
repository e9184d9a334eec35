"""``ssb distill``: a LoRA student on the bare question matches the frozen base model on the
hinted (teacher) view, at the solution tokens only.

* :mod:`ssb.distill.alignment` – the solution tokenized once, appended to both chat-templated views;
* :mod:`ssb.distill.batching`  – padding and the flat indices of the solution positions;
* :mod:`ssb.distill.forward`   – LM-head projections at those positions only, in chunks;
* :mod:`ssb.distill.step`      – one step: batch -> teacher signal -> student forward -> loss;
* :mod:`ssb.distill.trainer`   – the transformers Trainer around it, outputs and resume.

The teacher signal (online / offline top-k store) lives in :mod:`ssb.teacher`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # keep `import ssb.distill` free of torch
    if name in ("DistillConfig", "DistillResult", "distill"):
        from ssb.distill import trainer

        return getattr(trainer, name)
    if name in ("align_records", "align_record", "end_of_turn_id", "AlignedExample",
                "load_curated"):
        from ssb.distill import alignment

        return getattr(alignment, name)
    raise AttributeError(name)
