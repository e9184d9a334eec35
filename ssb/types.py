"""What plugins register: small specs and the protocols the stages call.

Nothing here imports torch or a plugin; stages hold these objects and call them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from ssb.records import Completion, Message, Problem, SamplingParams, Verdict

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class BadRow:
    """A source row that could not be normalized (kept for reporting with ``--skip-bad``)."""

    path: str
    line: int
    field: str
    reason: str


@dataclass
class LoadResult:
    problems: list[Problem]
    skipped: list[BadRow] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetLoader:
    """A named dataset.

    ``load(source, split, skip_bad=False, filters=None)`` returns a :class:`LoadResult`.
    ``source`` is a hub id or a local jsonl/json/parquet path (``None``: ``default_source``).
    Bad rows raise :class:`ssb.errors.DataError` naming file, line and field unless
    ``skip_bad``, in which case they are returned in ``LoadResult.skipped``.
    """

    name: str
    domain: str  # the verifier / prompt domain that judges this dataset
    load: Callable[..., LoadResult]
    default_source: str = ""
    splits: tuple[str, ...] = ("train", "test")
    description: str = ""


@runtime_checkable
class Verifier(Protocol):
    """Judges responses for one domain.

    Both methods take untrusted model text: they must never execute it and must return within
    a bounded time in any thread or process (an overrun is ``Verdict(correct=False,
    error="timeout")``).
    """

    domain: str

    def extract(self, response: str) -> str | None:
        """The final answer in ``response`` (last ``\\boxed{}`` or documented fallback)."""

    def verify(self, response: str, gold: str) -> Verdict:
        """Whether ``response``'s final answer equals ``gold``."""


@dataclass(frozen=True)
class PromptTemplate:
    """The student prompt and the hinted teacher prompt of a domain, named and versioned.

    ``student`` is formatted with ``question``; ``teacher`` with ``question``, ``correct``
    (a verified-correct response), ``wrong`` (a response the checker marked wrong) and
    ``wrong_detail`` (the verifier's :attr:`ssb.records.Verdict.detail` for the wrong one, e.g.
    a failing assertion; empty when the domain gives none -- a template may ignore it).
    """

    name: str
    version: str
    domain: str
    system: str
    student: str
    teacher: str

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def student_messages(self, question: str) -> list[Message]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.student.format(question=question)},
        ]

    def teacher_messages(self, question: str, correct: str, wrong: str,
                         wrong_detail: str = "") -> list[Message]:
        return [
            {"role": "system", "content": self.system},
            {
                "role": "user",
                "content": self.teacher.format(question=question, correct=correct, wrong=wrong,
                                               wrong_detail=wrong_detail or ""),
            },
        ]


ProgressCallback = Callable[[int], None]  # called with the number of completions just finished


@runtime_checkable
class Backend(Protocol):
    """A loaded generation engine.

    ``generate`` takes the whole batch (batching is the backend's job) and returns, per
    conversation, ``params.n`` completions in a stable order.  The chat template is the model's.
    """

    name: str

    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        params: SamplingParams,
        progress: ProgressCallback | None = None,
    ) -> list[list[Completion]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendFactory:
    """``create(model, adapter=None, **options)`` loads a :class:`Backend`.

    ``model`` is a hub id, a local HF directory or a local ``.gguf`` file (see
    :func:`ssb.models.resolve`).  ``options`` are backend specific (threads, device, base_url...).
    """

    name: str
    create: Callable[..., Backend]
    description: str = ""


@dataclass(frozen=True)
class Loss:
    """A distillation loss: ``fn(inputs: ssb.losses.LossInputs, **params) -> scalar tensor``.

    The value is a mean over solution tokens.  ``params`` come from ``--loss name=weight,name.key=value``.
    """

    name: str
    fn: Callable[..., "torch.Tensor"]
    description: str = ""


__all__ = [
    "BadRow",
    "LoadResult",
    "DatasetLoader",
    "Verifier",
    "PromptTemplate",
    "Backend",
    "BackendFactory",
    "Loss",
    "ProgressCallback",
    "Problem",
    "Completion",
    "SamplingParams",
    "Verdict",
]
