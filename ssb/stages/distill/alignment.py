"""Token alignment of the teacher and student views of one curated record.

The solution is tokenized ONCE: ``tokenizer(solution, add_special_tokens=False)`` plus the chat
template's end-of-turn token.  The very same ids are appended to the teacher prompt ids and to the
student prompt ids (each prompt rendered with the chat template, generation prompt on), so the two
views differ only in their prompts.  Logits at position ``p - 1`` predict token ``p``: for a
prompt of length ``P`` the solution token ``j`` sits at ``P + j`` and is predicted at ``P + j - 1``.

Over-long examples (``max_length``) are handled explicitly, never by a silent cut:

* ``overlong="truncate"`` (default): the solution is cut to the same length in both views so the
  longer view fits; a record whose prompt leaves no room for ``min_solution_tokens`` is dropped.
* ``overlong="drop"``: any record whose longer view exceeds ``max_length`` is dropped.

Both are counted in :class:`AlignmentReport` and logged as a warning by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from ssb.errors import DataError, SsbError
from ssb.records import CuratedRecord, Message

Overlong = Literal["truncate", "drop"]
_SENTINEL = "SSB_END_OF_TURN_PROBE"


@dataclass(frozen=True)
class AlignedExample:
    """One record as token ids: ``*_ids = *_prompt + solution_ids`` for both views."""

    id: str
    teacher_ids: tuple[int, ...]
    student_ids: tuple[int, ...]
    teacher_prompt_len: int
    student_prompt_len: int
    solution_ids: tuple[int, ...]
    truncated: bool = False  # the solution was cut to fit max_length

    @property
    def num_solution_tokens(self) -> int:
        return len(self.solution_ids)


@dataclass
class AlignmentReport:
    """What alignment did to the records: kept, truncated and dropped (with ids)."""

    kept: int = 0
    truncated: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    solution_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "truncated": len(self.truncated), "dropped": len(self.dropped),
                "truncated_ids": self.truncated[:50], "dropped_ids": self.dropped[:50],
                "solution_tokens": self.solution_tokens}


def end_of_turn_id(tokenizer) -> int:
    """The token that closes an assistant turn in the tokenizer's chat template.

    Found generically: render a conversation whose assistant turn holds a sentinel and take the
    first token after the sentinel (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3).
    Falls back to ``eos_token_id`` when the template puts nothing special after the content.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise SsbError("the tokenizer has no chat template; ssb distill needs one for both views")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}],
        tokenize=False,
    )
    at = text.rfind(_SENTINEL)
    if at < 0:
        raise SsbError("the chat template drops the assistant content; cannot find end of turn")
    after = text[at + len(_SENTINEL):]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    if ids and ids[0] in special:
        return int(ids[0])
    if tokenizer.eos_token_id is None:
        raise SsbError("cannot derive the end-of-turn token: template closes the assistant turn "
                       f"with {after!r} and the tokenizer has no eos token")
    return int(tokenizer.eos_token_id)


def prompt_ids(tokenizer, messages: Sequence[Message]) -> list[int]:
    """Chat-template token ids of ``messages`` with the generation prompt (assistant header)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def solution_ids(tokenizer, solution: str, eot_id: int) -> list[int]:
    """The solution's ids, tokenized once, closed by the end-of-turn token."""
    return list(tokenizer(solution, add_special_tokens=False)["input_ids"]) + [eot_id]


def align_record(tokenizer, record: CuratedRecord, eot_id: int, *, max_length: int | None = None,
                 overlong: Overlong = "truncate", min_solution_tokens: int = 8
                 ) -> AlignedExample | None:
    """Align one record; ``None`` when it must be dropped for ``max_length``."""
    if not record.solution.strip():
        raise DataError("empty solution", field="solution")
    teacher_prompt = prompt_ids(tokenizer, record.teacher_messages)
    student_prompt = prompt_ids(tokenizer, record.student_messages)
    sol = solution_ids(tokenizer, record.solution, eot_id)
    truncated = False
    longest_prompt = max(len(teacher_prompt), len(student_prompt))
    if max_length is not None and longest_prompt + len(sol) > max_length:
        room = max_length - longest_prompt
        if overlong == "drop" or room < min(min_solution_tokens, len(sol)):
            return None
        sol = sol[:room]
        truncated = True
    return AlignedExample(
        id=record.id,
        teacher_ids=tuple(teacher_prompt + sol),
        student_ids=tuple(student_prompt + sol),
        teacher_prompt_len=len(teacher_prompt),
        student_prompt_len=len(student_prompt),
        solution_ids=tuple(sol),
        truncated=truncated,
    )


def align_records(tokenizer, records: Iterable[CuratedRecord], *, max_length: int | None = None,
                  overlong: Overlong = "truncate", min_solution_tokens: int = 8
                  ) -> tuple[list[AlignedExample], AlignmentReport]:
    """Align every record (same end-of-turn id for all); returns the kept ones and a report."""
    if overlong not in ("truncate", "drop"):
        raise SsbError(f"overlong must be 'truncate' or 'drop', got {overlong!r}")
    eot = end_of_turn_id(tokenizer)
    out: list[AlignedExample] = []
    report = AlignmentReport()
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise DataError(f"duplicate record id {record.id!r}", field="id")
        seen.add(record.id)
        ex = align_record(tokenizer, record, eot, max_length=max_length, overlong=overlong,
                          min_solution_tokens=min_solution_tokens)
        if ex is None:
            report.dropped.append(record.id)
            continue
        if ex.truncated:
            report.truncated.append(record.id)
        report.kept += 1
        report.solution_tokens += ex.num_solution_tokens
        out.append(ex)
    return out, report


def curated_path(curated: str | Path) -> Path:
    """``DIR`` (holding curated.jsonl) or the jsonl file itself."""
    path = Path(curated)
    if path.is_dir():
        path = path / "curated.jsonl"
    if not path.is_file():
        from ssb.journal import open_input

        open_input(path, "curated file").close()  # names what it is: a FIFO, a loop, missing
        raise SsbError(f"curated file not found: {path}")
    return path


def load_curated(curated: str | Path) -> list[CuratedRecord]:
    """Read ``curated.jsonl``; a bad line raises DataError naming file, line and field."""
    path = curated_path(curated)
    from ssb.journal import read_jsonl_numbered

    records = []
    first_line: dict[str, int] = {}
    for line, data in read_jsonl_numbered(path, what="curated file"):
        try:
            record = CuratedRecord.from_dict(data)
        except DataError as exc:
            raise exc.at(path=str(path), line=line) from None
        if record.id in first_line:
            raise DataError(f"duplicate record id {record.id!r} (first on line "
                            f"{first_line[record.id]})", path=str(path), line=line, field="id")
        first_line[record.id] = line
        records.append(record)
    if not records:
        raise DataError("no curated records", path=str(path))
    return records
