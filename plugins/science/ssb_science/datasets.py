"""ARC (AI2 Reasoning Challenge) loaders: hub ``allenai/ai2_arc`` or local files of its rows.

A row is the hub's schema: ``id``, ``question``, ``choices`` = {``text``: [...], ``label``:
[...]}, ``answerKey``.  Labels are letters; numeric labels (``1``-``9``, a few hub rows) map to
letters by number (``1`` -> ``A``), answerKey with them.  A problem's ``question`` is the stem
followed by its lettered choices (``A. ...`` one per line: the templates format only
``question``); its ``gold`` is :func:`ssb_science.verifier.encode_gold` (the right letter and
every choice's text); ``metadata`` keeps ``arc_id``, ``stem``, ``labels``, ``choices``,
``answer`` and, when the hub gave numbers, ``raw_labels``.

Splits: ``test``, ``validation`` (alias ``dev``) and, on the hub, ``train``.  ``--source`` is a
file (jsonl/json/parquet) or a folder holding ``<challenge|easy>-<split>.jsonl`` (as
``../shared/data/arc/``) or ``<split>.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssb.dataio import LOCAL_FORMATS, BadField, Row, is_local, load_problems, text_field
from ssb.errors import DataError, SsbError
from ssb.records import Problem
from ssb.types import DatasetLoader, LoadResult

from ssb_science.verifier import encode_gold

HUB_ID = "allenai/ai2_arc"
CONFIGS = {"arc-challenge": ("ARC-Challenge", "challenge"), "arc-easy": ("ARC-Easy", "easy")}
SPLIT_ALIASES = {"dev": "validation", "val": "validation"}
SPLITS = ("test", "validation", "dev", "train")


def letter_labels(labels: list[str]) -> list[str]:
    """``["1", "2", "3", "4"]`` -> ``["A", "B", "C", "D"]``; letters are upper-cased."""
    out = []
    for label in labels:
        s = label.strip()
        if s.isdigit() and 1 <= int(s) <= 26:
            out.append(chr(ord("A") + int(s) - 1))
        elif len(s) == 1 and s.isalpha():
            out.append(s.upper())
        else:
            raise BadField("choices", f"choice label {label!r} is neither a letter nor 1-26")
    return out


def format_question(stem: str, choices: dict[str, str]) -> str:
    return stem.strip() + "\n\n" + "\n".join(f"{label}. {text}" for label, text in choices.items())


def _choices(row: Row) -> tuple[list[str], list[str]]:
    raw = row.data.get("choices")
    if raw is None:
        raise BadField("choices", "missing field 'choices'")
    if not isinstance(raw, dict):
        raise BadField("choices", f"field 'choices' must be an object with 'text' and 'label', "
                                  f"got {type(raw).__name__}")
    texts, labels = raw.get("text"), raw.get("label")
    if not isinstance(texts, list) or not isinstance(labels, list):
        raise BadField("choices", "field 'choices' needs the lists 'text' and 'label'")
    if not texts:
        raise BadField("choices", "field 'choices' has no choices")
    if len(texts) != len(labels):
        raise BadField("choices", f"field 'choices' has {len(texts)} texts but "
                                  f"{len(labels)} labels")
    if len(texts) < 2:
        raise BadField("choices", "field 'choices' has only one choice")
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise BadField("choices", "field 'choices' has an empty or non-text choice")
    if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in labels):
        raise BadField("choices", "field 'choices' has a label that is not text")
    return [t.strip() for t in texts], [str(x) for x in labels]


def make_normalize(name: str, split: str):
    def normalize(row: Row) -> Problem:
        stem = text_field(row, "question").strip()
        texts, raw_labels = _choices(row)
        labels = letter_labels(raw_labels)
        if len(set(labels)) != len(labels):
            raise BadField("choices", f"field 'choices' repeats a label: {raw_labels}")
        key = row.data.get("answerKey")
        if not isinstance(key, (str, int)) or isinstance(key, bool) or not str(key).strip():
            raise BadField("answerKey", "missing or empty field 'answerKey'")
        key = str(key).strip()
        answer = dict(zip(raw_labels, labels)).get(key) or (key.upper() if key.upper() in labels
                                                            and not key.isdigit() else None)
        if answer is None:
            raise BadField("answerKey", f"answerKey {key!r} is not among the labels "
                                        f"{raw_labels}")
        choices = dict(zip(labels, texts))
        arc_id = row.data.get("id")
        pid = (f"{name}/{arc_id}" if isinstance(arc_id, str) and arc_id.strip()
               else f"{name}/{split}/{row.index}")
        meta: dict[str, Any] = {"arc_id": arc_id, "stem": stem, "labels": labels,
                                "choices": texts, "answer": answer}
        if raw_labels != labels:
            meta["raw_labels"] = raw_labels
        return Problem(id=pid, question=format_question(stem, choices),
                       gold=encode_gold(answer, choices), dataset=name, metadata=meta)

    return normalize


def _local_file(source: str, prefix: str, split: str) -> str:
    """A folder's ``<prefix>-<split>.<ext>`` when it has one; otherwise ``source`` itself (a
    file, or a folder that ssb.dataio searches for ``<split>.<ext>``)."""
    path = Path(source)
    if path.is_dir():
        for suffix in LOCAL_FORMATS:
            candidate = path / f"{prefix}-{split}{suffix}"
            if candidate.is_file():
                return str(candidate)
    return source


def _quiet_hub() -> None:
    """No retry warnings from huggingface_hub on the terminal: offline, the error says it."""
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - an older or absent huggingface_hub: its warnings show
        pass


def _one_line(exc: SsbError) -> SsbError:
    """The hub's "could not load ... Offline? ..." message on one line (bad rows keep theirs)."""
    if isinstance(exc, DataError):
        return exc
    return SsbError(" ".join(str(exc).split()))


def load_config(name: str, source: str | None, split: str, skip_bad: bool = False
                ) -> LoadResult:
    config, prefix = CONFIGS[name]
    real_split = SPLIT_ALIASES.get(split, split)
    normalize = make_normalize(name, real_split)
    try:
        if source and is_local(source):
            return load_problems(_local_file(source, prefix, real_split), real_split, normalize,
                                 skip_bad=skip_bad)
        _quiet_hub()
        return load_problems(source or HUB_ID, real_split, normalize, skip_bad=skip_bad,
                             hub_config=config)
    except SsbError as exc:
        raise _one_line(exc) from None


def _check_filters(name: str, filters: dict[str, Any] | None) -> None:
    if filters:
        raise SsbError(f"dataset {name!r} takes no filters (got {sorted(filters)})")


def _loader(name: str, description: str) -> DatasetLoader:
    def load(source: str | None = None, split: str = "test", skip_bad: bool = False,
             filters: dict[str, Any] | None = None) -> LoadResult:
        _check_filters(name, filters)
        return load_config(name, source, split, skip_bad)

    return DatasetLoader(name=name, domain="science", load=load, default_source=HUB_ID,
                         splits=SPLITS, description=description)


def load_both(source: str | None = None, split: str = "validation", skip_bad: bool = False,
              filters: dict[str, Any] | None = None) -> LoadResult:
    """ARC-Challenge then ARC-Easy of one split (ids keep their dataset: ``arc-easy/...``).
    ``source``: a folder with both files, or none (the hub)."""
    _check_filters("arc", filters)
    if source and is_local(source) and not Path(source).is_dir():
        raise SsbError("dataset 'arc' reads both ARC sets: give --source a folder holding "
                       "challenge-<split>.jsonl and easy-<split>.jsonl (or use arc-challenge / "
                       "arc-easy for one file)")
    problems, skipped = [], []
    for name in CONFIGS:
        result = load_config(name, source, split, skip_bad)
        problems += result.problems
        skipped += result.skipped
    return LoadResult(problems=problems, skipped=skipped)


LOADERS = [
    _loader("arc-challenge", "ARC-Challenge science questions, 3-5 choices "
                             "(allenai/ai2_arc ARC-Challenge; CC BY-SA 4.0)"),
    _loader("arc-easy", "ARC-Easy science questions, 3-5 choices "
                        "(allenai/ai2_arc ARC-Easy; CC BY-SA 4.0)"),
    DatasetLoader(name="arc", domain="science", load=load_both, default_source=HUB_ID,
                  splits=SPLITS, description="ARC-Challenge + ARC-Easy of one split (e.g. both "
                                             "dev sets for curation)"),
]
