"""Typed records that flow between pipeline stages, each with a JSON round-trip.

``to_dict`` gives plain JSON-able data; ``from_dict`` checks required fields and raises
:class:`ssb.errors.DataError` naming the missing or mistyped one (callers add file and line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ssb.errors import DataError

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}
ROLES = ("system", "user", "assistant")
# A chat template's special token (<|im_start|>, <|im_end|>, <|endoftext|>, <|eot_id|>, ...):
# inside a message or a solution it would end or open a turn when the template renders it.
SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_]+\|>")
FinishReason = Literal["stop", "length"]


class _JSONRecord:
    """Mixin: dataclass <-> dict, nested records included, unknown keys rejected."""

    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[arg-type]
        for name in self._nested:  # nested records may shape their own JSON
            value = getattr(self, name)
            if isinstance(value, list):
                data[name] = [v.to_dict() for v in value]
            elif value is not None:
                data[name] = value.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any):
        if not isinstance(data, dict):
            raise DataError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                value = data[f.name]
                nested = cls._nested.get(f.name)
                if nested is not None and value is not None:
                    value = (
                        [nested.from_dict(v) for v in value]
                        if isinstance(value, list)
                        else nested.from_dict(value)
                    )
                kwargs[f.name] = value
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(f"{cls.__name__}: missing field {f.name!r}", field=f.name)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise DataError(
                f"{cls.__name__}: unknown field(s) {sorted(unknown)}", field=sorted(unknown)[0]
            )
        return cls(**kwargs)


@dataclass
class Problem(_JSONRecord):
    """One verifiable problem, normalized across datasets."""

    id: str
    question: str
    gold: str  # the final answer as text (LaTeX for MATH-like domains)
    dataset: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SamplingParams(_JSONRecord):
    """What a backend is asked to do for every conversation of a batch."""

    n: int = 1
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means off
    max_new_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    seed: int = 0

    def check(self, *, context: int | None = None, vocab: int | None = None) -> None:
        """Refuse what no model can honour, naming the flag: NaN or a negative temperature, a
        top_p outside (0, 1], a negative top_k, no samples or no tokens.  A backend that knows
        its model passes ``context`` (the most tokens it can see) and ``vocab``: more new tokens
        than the context would run on past what the model was built for, and a top_k above the
        vocabulary is not a restriction at all."""
        import math

        from ssb.errors import SsbError

        def bad(flag: str, rule: str, value: Any) -> SsbError:
            return SsbError(f"{flag} must be {rule}, got {value}")

        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise bad("temperature (--temperature)", "a finite number >= 0 (0: greedy)", self.temperature)
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise bad("top_p (--top-p)", "in (0, 1]", self.top_p)
        if self.top_k < 0:
            raise bad("top_k (--top-k)", ">= 0 (0: off)", self.top_k)
        if self.n < 1:
            raise bad("n (samples, -n)", ">= 1", self.n)
        if self.max_new_tokens < 1:
            raise bad("max_new_tokens (--max-tokens)", ">= 1", self.max_new_tokens)
        if context is not None and self.max_new_tokens > context:
            raise SsbError(f"--max-tokens {self.max_new_tokens} is beyond the model's context "
                           f"of {context} tokens; use at most {context}")
        if vocab is not None and self.top_k > vocab:
            raise SsbError(f"--top-k {self.top_k} is larger than the model's vocabulary "
                           f"({vocab} tokens); use at most {vocab}, or 0 for off")


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from ``seed`` and labels: stable across processes and machines, and
    independent of how a caller groups work into batches.  Every derived sampling seed in ssb
    and its backends comes from here."""
    blob = "|".join([str(seed), *map(str, parts)])
    digest = hashlib.sha256(blob.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class Completion(_JSONRecord):
    """One sampled continuation."""

    text: str
    num_tokens: int
    finish_reason: FinishReason


@dataclass
class Verdict(_JSONRecord):
    """The verifier's judgement of one response against one gold answer."""

    extracted: str | None
    correct: bool
    error: str | None = None  # e.g. "timeout"; an errored verdict is never correct
    # Why, in a few lines, when the domain can say (e.g. the first failing assertion of a code
    # candidate); shown to the hinted teacher next to the wrong attempt.
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["detail"] is None:  # domains without details print what they always did
            del data["detail"]
        return data


@dataclass
class Rollout(_JSONRecord):
    """A sampled response with its verdict."""

    text: str
    num_tokens: int
    finish_reason: FinishReason
    extracted: str | None
    correct: bool
    detail: str | None = None  # the verdict's detail (see Verdict.detail)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["detail"] is None:  # domains without details write the records they always did
            del data["detail"]
        return data


@dataclass
class CuratedRecord(_JSONRecord):
    """One kept problem: the paired teacher/student views and the target solution.

    ``student_messages`` and ``teacher_messages`` end *before* the solution; the solution is the
    assistant turn that follows either of them (tokenized once, see ``ssb.stages.distill``).
    """

    _nested: ClassVar[dict[str, type]] = {}

    id: str
    question: str
    gold: str
    dataset: str
    domain: str
    template: str  # "name@version" of the prompt template used
    student_messages: list[Message]
    teacher_messages: list[Message]
    solution: str
    correct_rollout: Rollout
    wrong_rollout: Rollout
    rollout_answers: list[str | None]
    rollout_correct: list[bool]
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> "CuratedRecord":
        """Also checks the types distill relies on: a hand-edited record whose
        ``student_messages`` is a string would otherwise reach the chat template and fail there
        with a library traceback."""
        record = super().from_dict(data)
        for name in ("id", "question", "gold", "template", "solution"):
            value = getattr(record, name)
            if not isinstance(value, str):
                raise DataError(f"{name} must be a string, got {type(value).__name__}",
                                field=name)
        for name in ("student_messages", "teacher_messages"):
            messages = getattr(record, name)
            if not isinstance(messages, list) or not messages:
                raise DataError(f"{name} must be a non-empty list of {{role, content}} "
                                f"messages, got {type(messages).__name__}", field=name)
            for i, m in enumerate(messages):
                if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                        and isinstance(m.get("content"), str)):
                    raise DataError(f"{name}[{i}] must be a {{role, content}} object of "
                                    f"strings, got {type(m).__name__}", field=name)
        record.check_views()
        return record

    def check_views(self) -> None:
        """What distill assumes of a record and a chat template cannot check: both views pose
        the record's question, use only the roles of :data:`ROLES` and end before the solution
        (never with an assistant turn); no text holds a chat special token, which would end
        or open a turn once rendered; the solution is not empty."""
        if not self.solution.strip():
            raise DataError("empty solution", field="solution")
        question = self.question.strip()
        for name in ("student_messages", "teacher_messages"):
            messages = getattr(self, name)
            for i, m in enumerate(messages):
                if m["role"] not in ROLES:
                    raise DataError(f"{name}[{i}] has role {m['role']!r}; a view uses "
                                    f"{', '.join(ROLES)}", field=name)
            if messages[-1]["role"] == "assistant":
                raise DataError(f"{name} ends with an assistant turn; a view ends before the "
                                "solution, which is the assistant turn after it", field=name)
            if question and not any(question in m["content"] for m in messages
                                    if m["role"] == "user"):
                raise DataError(f"{name} does not pose the record's question (the teacher and "
                                "student views must be about the same problem)", field=name)
        texts = [("solution", self.solution)] + [
            (f"{name}[{i}]", m["content"]) for name in ("student_messages", "teacher_messages")
            for i, m in enumerate(getattr(self, name))]
        for where, text in texts:
            found = SPECIAL_TOKEN.search(text)
            if found:
                raise DataError(f"{where} holds the chat special token {found.group()!r}, which "
                                "would end or open a turn once the chat template renders it",
                                field=where.partition("[")[0])


CuratedRecord._nested = {"correct_rollout": Rollout, "wrong_rollout": Rollout}


@dataclass
class RunManifest(_JSONRecord):
    """What a run was: enough to reproduce it and to refuse a changed config on resume."""

    command: str
    ssb_version: str
    plugins: dict[str, str]  # distribution name -> version
    versions: dict[str, str]  # python, torch, transformers, ...
    seed: int | None
    config: dict[str, Any]
    inputs: dict[str, str]  # path -> sha256
    started: str
    finished: str | None = None
