"""Reading dataset rows for domain plugins: local jsonl/json/parquet files or hub ids, via
``datasets``, with every row located (file + line) so a bad row is reported precisely.

A loader plugin calls :func:`load_problems` with a ``normalize(row, index) -> Problem`` function
that raises :class:`BadField` for a bad row; it gets a :class:`ssb.types.LoadResult`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ssb.errors import DataError, SsbError
from ssb.records import Problem
from ssb.types import BadRow, LoadResult

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class BadField(Exception):
    """Raised by a normalize function: ``field`` of this row is missing or unusable."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


@dataclass
class Row:
    data: dict[str, Any]
    index: int  # 0-based row number
    line: int | None  # 1-based line in a jsonl file; None for json arrays, parquet and the hub


def is_local(source: str) -> bool:
    return os.path.exists(source) or Path(source).suffix.lower() in LOCAL_FORMATS


def resolve_local(source: str, split: str) -> Path:
    """A file, or ``DIR/{split}.jsonl|json|parquet`` for a directory."""
    path = Path(source)
    if path.is_dir():
        for suffix in LOCAL_FORMATS:
            candidate = path / f"{split}{suffix}"
            if candidate.is_file():
                return candidate
        raise SsbError(f"{path}: no {split}.jsonl, {split}.json or {split}.parquet in this folder")
    if not path.is_file():
        from ssb.journal import open_input

        open_input(path, "dataset file").close()  # names what it is: a FIFO, a loop, missing
        raise SsbError(f"dataset file not found: {path}")
    if path.suffix.lower() not in LOCAL_FORMATS:
        raise SsbError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")
    return path


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _jsonl_line_numbers(path: Path) -> list[int]:
    """1-based numbers of the non-blank lines (the rows ``datasets`` reads, in order)."""
    from ssb.journal import iter_lines

    return [number for number, raw in iter_lines(path, "dataset file") if raw.strip()]


def read_local_rows(path: Path) -> Iterator[Row]:
    """Rows of a local file through ``datasets``; unreadable files -> DataError with the line."""
    from ssb.journal import open_input

    open_input(path, "dataset file").close()  # a regular file (not a FIFO or a /proc file)
    fmt = LOCAL_FORMATS[path.suffix.lower()]
    is_jsonl = path.suffix.lower() == ".jsonl"
    if is_jsonl:
        _validate_jsonl(path)  # exact line of malformed JSON before arrow sees it
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as exc:  # noqa: BLE001 - arrow's errors name no line: locate them
        if is_jsonl:
            # e.g. a field whose type differs between rows: read the lines directly so the
            # normalizer reports the exact line and field
            yield from _raw_jsonl_rows(path)
            return
        raise DataError(f"cannot read rows ({type(exc).__name__}: {str(exc)[:300]})",
                        path=str(path)) from None
    lines = _jsonl_line_numbers(path) if is_jsonl else None
    for index, data in enumerate(ds):
        yield Row(data=data, index=index, line=lines[index] if lines else None)


def _raw_jsonl_rows(path: Path) -> Iterator[Row]:
    from ssb.journal import read_jsonl_numbered

    for index, (number, data) in enumerate(read_jsonl_numbered(path, what="dataset file")):
        yield Row(data=data, index=index, line=number)


def _validate_jsonl(path: Path) -> None:
    """Every line through ssb's bounded reader before arrow sees the file: invalid JSON, a row
    over ``MAX_LINE_BYTES`` (arrow would hold it many times over) or nested past
    ``MAX_JSON_DEPTH`` is refused with its line."""
    from ssb.journal import read_jsonl

    for _ in read_jsonl(path, what="dataset file"):  # raises DataError(path, line)
        pass


_OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _hub_unreachable_reason() -> str | None:
    """Why the hub is not to be asked (offline mode set now, or no TCP connection within
    ``ssb.models.HUB_TIMEOUT``), else ``None``."""
    from huggingface_hub import constants

    from ssb.models import _hub_unreachable

    if constants.HF_HUB_OFFLINE or any(
            os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
            for v in _OFFLINE_ENVS):
        return "offline mode is set"
    return _hub_unreachable(constants.ENDPOINT)


def _load_offline(datasets: Any, *args: Any, **kwargs: Any) -> Any:
    """``load_dataset`` from the local datasets cache only (the libraries read their offline
    switches at import, so they are flipped here for the call): a cached copy loads, anything
    else fails at once instead of retrying an unreachable hub for a minute."""
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(*args, **kwargs)
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def read_hub_rows(hub_id: str, split: str, config: str | None = None) -> Iterator[Row]:
    datasets = _quiet_datasets()
    unreachable = _hub_unreachable_reason()
    try:
        if unreachable:
            ds = _load_offline(datasets, hub_id, config, split=split)
        else:
            ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as exc:  # noqa: BLE001
        where = (f"the hub cannot be reached ({unreachable}) and the local datasets cache "
                 "has no copy" if unreachable else
                 f"from the Hugging Face hub: {type(exc).__name__}: {str(exc)[:300]}")
        raise SsbError(
            f"could not load {hub_id!r}{f' (config {config!r})' if config else ''} split "
            f"{split!r}: {where}\n"
            "Offline? Pass a local copy with --source PATH (.jsonl, .json or .parquet)."
        ) from None
    for index, data in enumerate(ds):
        yield Row(data=dict(data), index=index, line=None)


def load_problems(source: str, split: str, normalize: Callable[[Row], Problem], *,
                  skip_bad: bool = False, hub_config: str | None = None,
                  keep: Callable[[Row], bool] | None = None) -> LoadResult:
    """Read ``source`` (local path or hub id) and normalize each row.

    A row whose ``normalize`` raises :class:`BadField` raises :class:`DataError` naming the file,
    line and field, or with ``skip_bad`` is recorded in ``LoadResult.skipped``.  ``keep`` filters
    rows (applied before normalizing).
    """
    if is_local(source):
        path = resolve_local(source, split)
        where, rows = str(path), read_local_rows(path)
    else:
        where, rows = f"{source}[{split}]", read_hub_rows(source, split, hub_config)
    problems: list[Problem] = []
    skipped: list[BadRow] = []
    for row in rows:
        if keep is not None and not keep(row):
            continue
        try:
            problems.append(normalize(row))
        except BadField as bad:
            line = row.line if row.line is not None else row.index + 1
            if skip_bad:
                skipped.append(BadRow(path=where, line=line, field=bad.field, reason=bad.reason))
                continue
            reason = bad.reason if row.line is not None else f"row {row.index + 1}: {bad.reason}"
            raise DataError(reason, path=where, line=row.line, field=bad.field) from None
    return LoadResult(problems=problems, skipped=skipped)


def text_field(row: Row, name: str, *, alternatives: tuple[str, ...] = ()) -> str:
    """The non-empty string in ``row[name]`` (or the first present alternative), else BadField."""
    for key in (name, *alternatives):
        value = row.data.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise BadField(key, f"field {key!r} must be a string, got {type(value).__name__}")
            if not value.strip():
                raise BadField(key, f"field {key!r} is empty")
            return value
    raise BadField(name, f"missing field {name!r}")
