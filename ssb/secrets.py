"""One redaction rule for everything ssb writes: files, logs, reports and error messages.

A value is secret when it was given for an option declared secret (a config field with
``secret=True``, a backend option with ``BackendOption.secret``), when its key names a secret
(``api_key``, ``token``, ``password``, ``secret``, in any case), or when it is the user-info part
of a URL (``http://user:SECRET@host``).  Secret values seen by this process are remembered
(:func:`remember`) so that the same value is masked wherever it shows up later, e.g. inside an
exception message from an HTTP client.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Iterable

REDACTED = "<redacted>"
# scheme://userinfo@host -- userinfo is everything up to the last '@' before the host part.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/@\s]+)@")
# key=value / key: value / "key": "value" where the key names a secret.
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?(?P<name>[A-Za-z][A-Za-z0-9_.-]*)[\"']?\s*[=:]\s*)(?P<quote>[\"']?)"
    r"(?P<value>[^\s\"',}]+)")

_known: set[str] = set()
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
    """Mask these values in everything redacted from now on (in this process)."""
    with _lock:
        for v in values:
            if v is not None and len(str(v)) >= 4:  # masking "a" everywhere would garble text
                _known.add(str(v))


def redact_text(text: str) -> str:
    """``text`` with URL credentials, ``key=secret`` pairs and remembered secrets masked."""
    if not text:
        return text
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    out = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('quote')}{REDACTED}"
                         if is_secret_key(m.group("name")) else m.group(0), out)
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in out:
            out = out.replace(value, REDACTED)
    return out


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


__all__ = ["REDACTED", "is_secret_key", "redact", "redact_text", "remember"]
