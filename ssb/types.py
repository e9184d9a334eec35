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

    Optional: an integer attribute ``min_correct`` (default 1) asks curate to keep a problem
    only when at least that many of its rollouts are correct (a multiple-choice domain declares
    2: one right rollout may be a lucky guess); ``ssb curate --min-correct`` overrides it.
    """

    domain: str

    def extract(self, response: str, strict: bool = False) -> str | None:
        """The final answer in ``response``; ``strict`` allows only the domain's explicit answer
        form (e.g. ``\\boxed{}``), with no lenient fallback (curate uses it for solutions that
        become training targets)."""

    def verify(self, response: str, gold: str, *, strict: bool = False,
               timeout: float | None = None) -> Verdict:
        """Whether ``response``'s final answer equals ``gold``; ``strict`` as for
        :meth:`extract`; ``timeout`` bounds the work in seconds (``None``: the verifier's own
        bound)."""


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
class BackendOption:
    """One option a backend accepts (``-B name=value``), typed and documented.

    ``volatile`` options change speed or plumbing (threads, URLs, batch sizes), never what is
    generated: they are left out of a run's resume identity.  ``secret`` options (API keys) are
    never written to a file or a log.  ``values`` (a regular expression the whole value must
    match, e.g. ``cpu|cuda(:[0-9]+)?``) and ``ge`` (a lower bound for numbers) are checked when
    the option is parsed, so a wrong value is one line naming the option, not a library
    traceback at load time.
    """

    name: str
    type: type  # int, float, bool or str
    default: Any = None
    help: str = ""
    volatile: bool = False
    secret: bool = False
    values: str | None = None  # regex the value must match (as text), with its meaning in help
    ge: float | None = None  # numbers: the smallest value allowed

    def parse(self, value: Any, backend: str) -> Any:
        """A loose value (``"2"`` from the command line, ``2`` from TOML) as ``self.type``."""
        from ssb.errors import SsbError

        bad = SsbError(f"backend {backend!r}: option {self.name} expects "
                       f"{self.type.__name__}, got {value!r}")
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise bad
        if self.type is int:
            if isinstance(value, bool):
                raise bad
            try:
                number = int(value) if not isinstance(value, float) or value.is_integer() \
                    else _raise(bad)
            except (TypeError, ValueError):
                raise bad from None
            return self._checked(number, backend)
        if self.type is float:
            try:
                return self._checked(float(value), backend)
            except (TypeError, ValueError):
                raise bad from None
        if isinstance(value, (list, tuple, dict)):  # a TOML list/table where text belongs
            shape = "a table" if isinstance(value, dict) else "a list"
            raise SsbError(f"backend {backend!r}: option {self.name} expects one "
                           f"{self.type.__name__} value, got {shape}")  # not shown: a secret?
        return self._checked(str(value), backend)

    def _checked(self, value: Any, backend: str) -> Any:
        """``value`` if ``values`` and ``ge`` allow it, else one line naming the option."""
        import math
        import re

        from ssb.errors import SsbError

        if isinstance(value, float) and not math.isfinite(value):
            raise SsbError(f"backend {backend!r}: option {self.name} must be a finite number, "
                           f"got {value}")
        if self.ge is not None and isinstance(value, (int, float)) and value < self.ge:
            raise SsbError(f"backend {backend!r}: option {self.name} must be >= {self.ge:g}, "
                           f"got {value}")
        if self.values is not None and not re.fullmatch(self.values, str(value)):
            raise SsbError(f"backend {backend!r}: option {self.name}={value!r} is not valid "
                           f"({self.help or self.values})")
        return value


def _raise(exc: Exception):
    raise exc


# Adapter formats a backend can load (``BackendFactory.adapter_formats``).
ADAPTER_PEFT = "peft"  # a peft LoRA directory (adapter_config.json + safetensors)
ADAPTER_GGUF = "gguf"  # a llama.cpp GGUF LoRA file (``ssb export`` makes one from peft)


@dataclass(frozen=True)
class BackendFactory:
    """``create(model, adapter=None, **options)`` loads a :class:`Backend`.

    A factory says what the backend is, so stages ask capabilities, never names:

    * ``options``: the typed ``-B`` options it takes (unknown ones are refused before loading);
    * ``adapter_formats``: the LoRA formats it loads (:data:`ADAPTER_PEFT`, :data:`ADAPTER_GGUF`);
    * ``loads_hf_dirs`` / ``loads_gguf``: the model formats it loads (a merged round-r student
      is an HF directory).

    ``model`` is a hub id, a local HF directory or a local ``.gguf`` file (see
    :func:`ssb.models.resolve`).
    """

    name: str
    create: Callable[..., Backend]
    description: str = ""
    options: tuple[BackendOption, ...] = ()
    adapter_formats: frozenset[str] = frozenset()
    loads_hf_dirs: bool = True
    loads_gguf: bool = False

    def option(self, name: str) -> BackendOption:
        from ssb.errors import SsbError

        for o in self.options:
            if o.name == name:
                return o
        known = ", ".join(o.name for o in self.options) or "none"
        raise SsbError(f"backend {self.name!r} has no option {name!r} (options: {known})")

    def parse_options(self, items: "dict[str, Any] | Sequence[str] | None") -> dict[str, Any]:
        """``["n_threads=2"]`` or ``{"n_threads": "2"}`` -> ``{"n_threads": 2}``, typed by the
        declared schema; an unknown name or a bad value is one clear error."""
        from ssb.errors import SsbError

        pairs: list[tuple[str, Any]] = []
        if isinstance(items, dict):
            pairs = list(items.items())
        else:
            for item in items or []:
                key, eq, value = str(item).partition("=")
                if not eq or not key.strip():
                    raise SsbError(f"--backend-opt expects KEY=VALUE, got {_redacted_item(item)!r}")
                pairs.append((key.strip(), value.strip()))
        out: dict[str, Any] = {}
        for key, value in pairs:
            name = key.replace("-", "_")
            spec = next((o for o in self.options if o.name == name), None)
            if spec is None:
                spec = next((o for o in self.options if o.name == name.lower()), None)
                if spec is not None:  # e.g. API_KEY=...: refuse without echoing the value
                    raise SsbError(f"backend {self.name!r}: option names are lower case; "
                                   f"use {spec.name}=..., not {key}=...")
                self.option(name)  # raises, listing the known options
            out[name] = spec.parse(value, self.name)
            if spec.secret:
                from ssb.secrets import remember

                remember([out[name]])  # masked in every file and log from now on
        return out

    def identity_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options that decide what is generated (compared on resume)."""
        return {k: v for k, v in options.items()
                if not self._flag(k, "volatile") and not self._flag(k, "secret")}

    def public_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Every option except secrets (what a manifest records)."""
        return {k: v for k, v in options.items() if not self._flag(k, "secret")}

    def secret_values(self, options: dict[str, Any]) -> list[str]:
        return [str(v) for k, v in options.items() if self._flag(k, "secret") and v]

    def _flag(self, name: str, attr: str) -> bool:
        spec = next((o for o in self.options if o.name == name), None)
        return bool(spec and getattr(spec, attr))


def _redacted_item(item: Any) -> str:
    from ssb.secrets import redact_text

    return redact_text(str(item))


@dataclass(frozen=True)
class Loss:
    """A distillation loss: ``fn(inputs: ssb.losses.LossInputs, **params) -> scalar tensor``.

    The value is a mean over solution tokens.  ``params`` come from ``--loss name=weight,name.key=value``.
    ``needs_teacher``: whether ``fn`` reads ``inputs.teacher_logits`` / ``inputs.teacher_topk``
    (a loss that does not, like cross-entropy on the solution, can train with ``--teacher none``).
    """

    name: str
    fn: Callable[..., "torch.Tensor"]
    description: str = ""
    needs_teacher: bool = True


__all__ = [
    "BadRow",
    "LoadResult",
    "DatasetLoader",
    "Verifier",
    "PromptTemplate",
    "Backend",
    "BackendFactory",
    "BackendOption",
    "ADAPTER_PEFT",
    "ADAPTER_GGUF",
    "Loss",
    "ProgressCallback",
    "Problem",
    "Completion",
    "SamplingParams",
    "Verdict",
]
