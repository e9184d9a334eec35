"""One redaction rule for everything ssb writes: files, logs, reports and error messages.

A value is secret when it was given for an option declared secret (a config field with
``secret=True``, a backend option with ``BackendOption.secret``), when its key names a secret
(``api_key``, ``token``, ``password``, ``secret``, in any case), or when it is the user-info part
of a URL (``http://user:SECRET@host``).

Two mechanisms, one rule:

* **Shapes.** :func:`redact_text` masks URL user-info and ``key=secret`` pairs in a message.  The
  user-info is read the way HTTP clients read it (:func:`url_credentials`): the authority ends at
  the first ``/``, ``?`` or ``#`` after ``scheme://``, and the user-info at the *last* ``@``
  before it, so ``http://u:SEK@XYZW16@host`` hides all of ``u:SEK@XYZW16``.
* **Values.**  The secret values found in a process's inputs (its arguments, config files,
  resolved configs, dataset sources: :func:`learn`, :func:`learn_argv`, :func:`remember`) are
  remembered, and :func:`mask` hides each of them wherever it appears later, whatever a library
  did to the text around it (``datasets`` prints ``https:/user:PASS@host``).  Every line that
  leaves the process goes through :func:`mask`: ``sys.stdout``/``sys.stderr`` (installed by
  :func:`mask_streams` in ``ssb.cli.main`` and in a stage's child process), journal lines and
  atomic file writes (:mod:`ssb.journal`), so manifests, results, summaries and reports too.

A remembered value is masked only when it has at least :data:`MIN_LENGTH` characters (masking
``"ab"`` everywhere would garble text).  A URL's password is remembered, and so is its user name
when it stands alone (``https://TOKEN@host``) or is at least 8 characters long (and the pieces
of a password between its ``@`` and ``:``, as a parser that cuts at the first ``@`` would show
them: ``XYZW16`` of ``SEK@XYZW16``); a short user
name next to a password (``u:PASS@``) is an identity, and masking ``user`` everywhere would
garble every chat message.  Percent-escaped parts are remembered decoded as well.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any, Iterable
from urllib.parse import unquote

REDACTED = "<redacted>"
MIN_LENGTH = 4
# scheme:// (or a library's mangled scheme:/) then the authority up to the first '/', '?', '#'
# or blank; greedy, so the user-info ends at the LAST '@' of the authority, as clients read it.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:/{1,3})(?P<info>[^/?#\s\"'<>]*)@")
# key=value / key: value / "key": "value" where the key names a secret.
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?(?P<name>[A-Za-z][A-Za-z0-9_.-]*)[\"']?\s*[=:]\s*)(?P<quote>[\"']?)"
    r"(?P<value>[^\s\"',}]+)")

_known: set[str] = set()
_ordered: list[str] = []  # _known, longest first (a value inside a longer one masks after it)
_lock = threading.Lock()


def is_secret_key(name: str) -> bool:
    """``api_key``, ``API-KEY``, ``token``, ``hf_token``, ``password``, ``client_secret``...; not
    ``max_tokens`` or ``tokenizer_sha256``."""
    low = str(name).lower()
    parts = re.split(r"[^a-z0-9]+", low)
    return (low.replace("-", "_").endswith(("api_key", "apikey"))
            or parts[-1] in ("token", "password", "passwd", "secret", "key") and
            (parts[-1] != "key" or len(parts) > 1 and parts[-2] in ("api", "access", "secret",
                                                                     "private"))
            or "password" in parts or "secret" in parts)


def remember(values: Iterable[Any]) -> None:
    """Mask these values in everything redacted or masked from now on (in this process)."""
    global _ordered
    with _lock:
        added = False
        for v in values:
            if v is None or isinstance(v, bool):
                continue
            raw = str(v)
            # as given, percent-decoded (what a client sends) and JSON-escaped (inside a file)
            for text in {raw, unquote(raw), json.dumps(raw, ensure_ascii=False)[1:-1]}:
                if len(text) >= MIN_LENGTH and text not in _known:
                    _known.add(text)
                    added = True
        if added:
            _ordered = sorted(_known, key=len, reverse=True)


def url_credentials(text: str) -> list[str]:
    """The secret parts of every URL user-info in ``text`` (see the module docstring)."""
    parts: list[str] = []
    for m in _URL_USERINFO.finditer(str(text)):
        user, colon, password = m.group("info").partition(":")
        if colon and password:
            parts.append(password)
            # and its pieces, as a parser that stops at the first '@' would show them
            parts.extend(re.split(r"[@:]", password) if re.search(r"[@:]", password) else [])
            if len(user) >= 8:
                parts.append(user)
        elif user:
            parts.append(user)  # https://TOKEN@host: the user name is the credential
    return parts


def learn(obj: Any, key: str | None = None) -> None:
    """Remember the secrets in an input: values under keys that name a secret, URL user-info
    anywhere, ``key=secret`` items inside strings (``-B api_key=...``); walks dicts and lists
    (without recursion: a deeply nested input file cannot overflow the stack)."""
    stack: list[tuple[Any, str | None]] = [(obj, key)]
    while stack:
        item, name = stack.pop()
        secret_key = name is not None and is_secret_key(name)
        if isinstance(item, dict):
            stack.extend((v, str(k)) for k, v in item.items())
        elif isinstance(item, (list, tuple, set)):
            stack.extend((v, name) for v in item)
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, (int, float)):
            if secret_key:
                remember([item])
        else:
            text = str(item)
            if secret_key and text:
                remember([text])
            remember(url_credentials(text))
            remember(m.group("value") for m in _KEY_VALUE.finditer(text)
                     if is_secret_key(m.group("name")))


def learn_argv(argv: Iterable[str]) -> None:
    """Remember the secrets on a command line: ``--api-key X`` / ``--token=X`` values, and
    whatever :func:`learn` finds in each argument."""
    argv = [str(a) for a in argv]
    for i, arg in enumerate(argv):
        learn(arg)
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if is_secret_key(name):
                if eq:
                    remember([value])
                elif i + 1 < len(argv):
                    remember([argv[i + 1]])


def mask(text: str) -> str:
    """``text`` with every remembered secret value masked (cheap: for every line written)."""
    if not text:
        return text
    ordered = _ordered
    for value in ordered:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_text(text: str) -> str:
    """``text`` with URL credentials, ``key=secret`` pairs and remembered secrets masked."""
    if not text:
        return text
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    out = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('quote')}{REDACTED}"
                         if is_secret_key(m.group("name")) else m.group(0), out)
    return mask(out)


def redact(obj: Any) -> Any:
    """A JSON-able structure with every secret masked (keys naming secrets lose their value)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "", [], {}) else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


class MaskedStream:
    """A text stream that writes through :func:`mask` to the stream it wraps (everything else,
    ``isatty``, ``fileno``, ``encoding``..., is the wrapped stream's)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def mask_streams() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through :func:`mask` (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream))


__all__ = ["MIN_LENGTH", "REDACTED", "MaskedStream", "is_secret_key", "learn", "learn_argv",
           "mask", "mask_streams", "redact", "redact_text", "remember", "url_credentials"]
