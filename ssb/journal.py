"""Crash-safe files: an append-only, fsync'd JSONL journal and atomic whole-file writes.

A journal line is written with one ``write`` + ``fsync``; a process killed mid-write leaves at most
one torn last line, which :meth:`Journal.read` drops (and :meth:`Journal.open` truncates) so a
resumed run neither loses a completed record nor duplicates one.

Text may hold lone surrogates (``"\\ud800"``: a dataset row, a model response, ``verify --input``),
which UTF-8 cannot encode.  Files are written with ``errors="backslashreplace"``: every other
character is plain UTF-8, and a lone surrogate becomes the six characters ``\\ud800``.  JSON puts
such a character only inside a string literal, where ``\\ud800`` is its JSON escape, so a JSON line
or file reads back exactly (``json.loads`` gives ``"\\ud800"`` again) instead of the write raising
``UnicodeEncodeError`` on every rerun.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ssb.errors import DataError

# See the module docstring: lone surrogates are written as their JSON escape, never raise.
ENCODING_ERRORS = "backslashreplace"


def json_line(obj: Any) -> str:
    """``obj`` as one JSON line (non-ASCII kept readable) that always encodes to UTF-8: a lone
    surrogate is written as its JSON escape ``\\ud800`` (for writers other than this module's,
    such as stdout)."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.encode("utf-8", ENCODING_ERRORS).decode("utf-8") + "\n"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=ENCODING_ERRORS) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # e.g. a full disk: say which file
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file; a bad line raises DataError with its line number.

    With ``tolerate_torn_tail`` an unparsable *last* line without a newline is ignored: that is
    what a killed writer leaves behind.
    """
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        is_last_unterminated = number == len(lines) and not data.endswith(b"\n")
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if tolerate_torn_tail and is_last_unterminated:
                return
            raise DataError(f"invalid JSON: {exc}", path=str(path), line=number) from None
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object", path=str(path), line=number)
        yield obj


class Journal:
    """Append-only JSONL file of completed work items, one object per line, each fsync'd."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return list(read_jsonl(self.path, tolerate_torn_tail=True))

    def open(self) -> "Journal":
        """Open for appending, first cutting a torn last line left by a killed writer."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                with open(self.path, "r+b") as f:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
        self._file = open(self.path, "a", encoding="utf-8", errors=ENCODING_ERRORS)
        return self

    def append(self, obj: dict) -> None:
        if self._file is None:
            self.open()
        assert self._file is not None
        try:
            self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # e.g. a full disk: say which file (a torn line is cut on reopen)
            if exc.filename is None:
                exc.filename = str(self.path)
            raise

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Journal":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class OutputLock:
    """An exclusive lock on a stage's output directory, so two processes never write the same
    journal.  ``flock`` is released by the kernel when the holder dies, even by SIGKILL."""

    def __init__(self, path: str | os.PathLike, command: str):
        self.path, self.command = Path(path), command
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        from ssb.errors import SsbError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise SsbError(f"another `{self.command}` is writing to {self.path.parent}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
