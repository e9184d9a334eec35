"""Errors the CLI turns into one clear line and exit code 2 (bad input, never a traceback)."""

from __future__ import annotations


class SsbError(Exception):
    """A user-facing error: the message is printed as is."""

    exit_code = 2


class DataError(SsbError):
    """Bad input data; names the file, line and field where they are known."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.reason = message
        self.path, self.line, self.field = path, line, field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f" (field {self.field!r})" if self.field and self.field not in self.reason else ""
        return f"{where}{self.reason}{field}"

    def at(self, path: str | None = None, line: int | None = None) -> "DataError":
        """The same error located at a file and line."""
        return DataError(self.reason, path=path or self.path, line=line or self.line,
                         field=self.field)


class MissingDependency(SsbError):
    """An optional dependency is absent; the message says which extra to install."""


class DiskFull(SsbError):
    """The disk (or a quota) filled up while writing ``path``; what was finished is kept.

    Journaled stages fsync each finished unit of work, so rerunning the same command after
    freeing space continues where the run stopped.
    """

    def __init__(self, path: str | None, *, kept_in: str | None = None):
        self.path, self.kept_in = path, kept_in
        where = f" writing {path}" if path else ""
        kept = (f"; the work finished so far is kept in {kept_in}: free some space and rerun "
                "the same command to continue") if kept_in else "; free some space and retry"
        super().__init__(f"no space left on device{where}{kept}")


# Messages of libraries that report a full disk without an OSError (safetensors' Rust I/O).
_DISK_FULL_TEXT = ("no space left on device", "os error 28", "disk quota exceeded",
                   "os error 122")


def disk_full_cause(exc: BaseException | None) -> BaseException | None:
    """The exception in ``exc``'s chain that says the disk is full (ENOSPC / EDQUOT, or a
    library error whose message says so), else ``None``.  One that names its file is preferred:
    closing a file after a failed write fails again, without the name."""
    import errno

    found: list[BaseException] = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            found.append(exc)
        elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            found.append(exc)
        elif not isinstance(exc, SsbError) and any(t in str(exc).lower()
                                                   for t in _DISK_FULL_TEXT):
            found.append(exc)
        exc = exc.__cause__ or exc.__context__
    named = [e for e in found if getattr(e, "filename", None) or getattr(e, "path", None)]
    return (named or found or [None])[0]
