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

Every text written here goes through :func:`ssb.secrets.mask` (a secret value this process has
learned never reaches a file), and every file gets the same permissions, those of a plain
``open()``: ``0o666`` less the umask (:func:`output_mode`).  ``mkstemp`` alone would leave
results 0600 next to 0644 journals.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ssb.errors import DataError
from ssb.secrets import mask

# See the module docstring: lone surrogates are written as their JSON escape, never raise.
ENCODING_ERRORS = "backslashreplace"


def json_line(obj: Any) -> str:
    """``obj`` as one JSON line (non-ASCII kept readable) that always encodes to UTF-8: a lone
    surrogate is written as its JSON escape ``\\ud800`` (for writers other than this module's,
    such as stdout)."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.encode("utf-8", ENCODING_ERRORS).decode("utf-8") + "\n"


def output_mode() -> int:
    """The permissions of every file ssb writes: ``0o666`` less the process umask, as ``open()``
    gives (read without changing the umask: another thread may be creating a file)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # no /proc: the classic dance
    os.umask(umask)
    return 0o666 & ~umask


def set_output_mode(target: int | str | os.PathLike) -> None:
    """Give a file made by ``mkstemp`` (0600) the mode of :func:`output_mode`; ``target`` is an
    open descriptor or a path."""
    if isinstance(target, int):
        os.fchmod(target, output_mode())
    else:
        os.chmod(target, output_mode())


def check_write_target(path: str | os.PathLike, what: str = "output") -> None:
    """Refuse to replace anything but a regular file: an atomic write renames a new file over
    ``path``, which would swap a device node, a FIFO or a symlink for a regular file."""
    import stat

    from ssb.errors import SsbError

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return  # a new path
    except NotADirectoryError:
        raise SsbError(f"{what} {path}: a parent of it is not a directory") from None
    if stat.S_ISREG(mode):
        return
    kind = ("a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device node" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
    raise SsbError(f"{what} {path} is {kind}; name a new path or a regular file to replace")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Remembered secrets are masked and the file gets :func:`output_mode`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        set_output_mode(fd)
        with os.fdopen(fd, "w", encoding="utf-8", errors=ENCODING_ERRORS) as f:
            f.write(mask(text))
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


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False,
               what: str = "JSONL file") -> Iterator[dict]:
    """Yield the JSON objects of a JSONL file; a bad line raises DataError with its line number.

    Read through the bounded readers below: a FIFO, a device or a /proc file is refused, a line
    over :data:`MAX_LINE_BYTES` or nested deeper than :data:`MAX_JSON_DEPTH` is refused by line.
    With ``tolerate_torn_tail`` an unparsable *last* line without a newline is ignored: that is
    what a killed writer leaves behind.
    """
    for number, obj in read_jsonl_numbered(path, tolerate_torn_tail=tolerate_torn_tail,
                                           what=what):
        yield obj


def read_jsonl_numbered(path: str | os.PathLike, *, tolerate_torn_tail: bool = False,
                        what: str = "JSONL file") -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for each non-blank line of a JSONL file (see
    :func:`read_jsonl`)."""
    for number, raw in iter_lines(path, what):
        if not raw.strip():
            continue
        try:
            obj = loads_bounded(raw, path=path, line=number)
        except DataError:
            if tolerate_torn_tail and not raw.endswith(b"\n"):
                return  # only the last line can lack its newline
            raise
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object", path=str(path), line=number)
        yield number, obj

# -- bounded readers: every file ssb reads as input ------------------------------------------------
# One reader for every JSON, JSONL and TOML input (datasets, curated records, eval runs, verify
# input, configs), so that no input can recurse, block or balloon: a FIFO or a device is refused
# before it is read (opening one for reading can block forever), and so is a kernel pseudo-file
# (/proc, /sys: its size is a lie, and /proc/self/environ holds this process's secrets); a line is
# read up to MAX_LINE_BYTES, a whole file up to MAX_DOCUMENT_BYTES; JSON nesting is bounded by
# MAX_JSON_DEPTH.  Each refusal is one DataError/SsbError naming the file (and line).

MAX_LINE_BYTES = 16 << 20  # one JSONL row (datasets turn a row into several copies of itself)
MAX_DOCUMENT_BYTES = 64 << 20  # a whole JSON or TOML file (summary.json, a config)
MAX_JSON_DEPTH = 64  # arrays and objects inside each other
PSEUDO_FILESYSTEMS = ("/proc", "/sys")  # devices under /dev are refused as not regular


def open_input(path: str | os.PathLike, what: str = "input file"):
    """``path`` opened for binary reading, if it is a regular file; else one clear
    :class:`~ssb.errors.SsbError` (missing, a directory, a FIFO, a device, a symlink loop, a
    kernel pseudo-file).  The file is opened without blocking first, so a FIFO never hangs."""
    import errno
    import fcntl
    import stat

    from ssb.errors import SsbError

    path = Path(path)
    real = os.path.realpath(path)
    if any(real == p or real.startswith(p + "/") for p in PSEUDO_FILESYSTEMS):
        raise SsbError(f"{what} {path} is a kernel pseudo-file ({real}), not a data file; "
                       "copy what you need into a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SsbError(f"{what} not found: {path}") from None
    except OSError as exc:
        reason = ("a symlink loop" if exc.errno == errno.ELOOP
                  else "under something that is not a directory" if exc.errno == errno.ENOTDIR
                  else exc.strerror or type(exc).__name__)
        raise SsbError(f"{what} {path}: {reason}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device" if
                stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise SsbError(f"{what} {path} is {kind}; name a regular file")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def read_document(path: str | os.PathLike, what: str = "input file",
                  limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a whole (JSON, TOML) file, through :func:`open_input`, up to ``limit``."""
    with open_input(path, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"file is over {limit >> 20} MiB; ssb reads {what}s up to that size",
                        path=str(path))
    return data


def iter_lines(path: str | os.PathLike, what: str = "input file") -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line) of a text file, each line up to :data:`MAX_LINE_BYTES`;
    a longer one is refused with its line number.  A last line without ``\\n`` keeps none."""
    with open_input(path, what) as f:
        number = 0
        while raw := f.readline(MAX_LINE_BYTES + 2):
            number += 1
            if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                raise DataError(f"line is over {MAX_LINE_BYTES >> 20} MiB; ssb reads rows up to "
                                "that size", path=str(path), line=number)
            yield number, raw


def loads_bounded(raw: bytes | str, *, path: str | os.PathLike | None = None,
                  line: int | None = None) -> Any:
    """``json.loads(raw)``, with nesting bounded by :data:`MAX_JSON_DEPTH`; invalid JSON or
    nesting past the bound is a :class:`~ssb.errors.DataError` naming ``path`` and ``line``."""
    where = {"path": None if path is None else str(path), "line": line}
    try:
        obj = json.loads(raw)
    except RecursionError:
        obj = _TOO_DEEP
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON: {exc}", **where) from None
    if obj is _TOO_DEEP or _nesting_exceeds(obj, MAX_JSON_DEPTH):
        raise DataError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", **where)
    return obj


_TOO_DEEP = object()


def _nesting_exceeds(obj: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than ``limit`` deep (iterative: no recursion)."""
    if not isinstance(obj, (dict, list)):
        return False
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A whole JSON file (``summary.json``, ``adapter_config.json``), bounded in size and depth."""
    return loads_bounded(read_document(path, what), path=path)


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
            self._file.write(mask(json.dumps(obj, ensure_ascii=False)) + "\n")
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


LOCK_NAME = ".ssb.lock"


class OutputLock:
    """An exclusive lock on an output directory, so two processes never write into it, whatever
    their commands (``ssb curate`` and ``ssb eval`` on one ``--out`` included).  ``path`` is the
    directory's lock file, :data:`LOCK_NAME` in it.  ``flock`` is released by the kernel when the
    holder dies, even by SIGKILL.  The holder writes its command into the file so that the
    refused process can name it."""

    def __init__(self, path: str | os.PathLike, command: str):
        self.path, self.command = Path(path), command
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        from ssb.errors import SsbError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, output_mode())
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self.fd)
            self.fd = None
            raise SsbError(f"another `{holder or 'ssb command'}` is writing to "
                           f"{self.path.parent}") from None
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{self.command}\n".encode(), 0)
        except OSError:
            pass  # only a courtesy for the refused process's message (e.g. a full disk)
        return self

    def _holder(self) -> str:
        try:
            return os.pread(self.fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
