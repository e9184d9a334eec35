"""``ssb distill``: a LoRA student on the bare question matches the frozen base model on the
hinted (teacher) view, at the solution tokens only.

* :mod:`ssb.stages.distill.alignment` – the solution tokenized once, appended to both chat-templated views;
* :mod:`ssb.stages.distill.batching`  – padding and the flat indices of the solution positions;
* :mod:`ssb.stages.distill.forward`   – LM-head projections at those positions only, in chunks;
* :mod:`ssb.stages.distill.step`      – one step: batch -> teacher signal -> student forward -> loss;
* :mod:`ssb.stages.distill.trainer`   – the stage: config, outputs, resume;
* :mod:`ssb.stages.distill.hf_trainer` – the transformers Trainer subclass and its callbacks.

The teacher signal (online / offline top-k store) lives in :mod:`ssb.stages.distill.teacher`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:  # keep `import ssb.stages.distill` free of torch
    if name in ("DistillConfig", "DistillResult", "distill"):
        from ssb.stages.distill import trainer

        return getattr(trainer, name)
    if name in ("align_records", "align_record", "end_of_turn_id", "AlignedExample",
                "load_curated"):
        from ssb.stages.distill import alignment

        return getattr(alignment, name)
    raise AttributeError(name)
