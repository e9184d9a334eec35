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
