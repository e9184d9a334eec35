"""Helpers every backend shares: option checking, seeds, stop strings, optional imports."""

from __future__ import annotations

import hashlib
import importlib
import json
from typing import Any, Sequence

from ssb.errors import MissingDependency, SsbError
from ssb.records import Completion, Message, SamplingParams, derive_seed  # noqa: F401 (re-exported to the backends)


def require(module: str, extra: str, what: str):
    """Import an optional dependency or raise one clear line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"the {what} backend needs the '{module}' package ({exc.__class__.__name__}: {exc}); "
            f"install it with: pip install 'softboot-backends[{extra}]'"
        ) from None


def check_options(backend: str, options: dict[str, Any], known: Sequence[str]) -> None:
    """Refuse an unknown backend option instead of silently ignoring a typo."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SsbError(
            f"unknown option(s) for the {backend} backend: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )


def check_params(params: SamplingParams, *, context: int | None = None,
                 vocab: int | None = None) -> None:
    """Reject settings no backend can honour, with the flag named; ``context`` and ``vocab``
    (the model's, where the backend knows them) bound ``--max-tokens`` and ``--top-k``
    (:meth:`ssb.records.SamplingParams.check`)."""
    params.check(context=context, vocab=vocab)


def check_conversations(conversations: Sequence[Sequence[Message]]) -> None:
    for i, conv in enumerate(conversations):
        if not conv:
            raise SsbError(f"conversation {i} is empty")
        for j, msg in enumerate(conv):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise SsbError(f"conversation {i}, message {j}: expected {{'role', 'content'}}")


def conversation_key(conversation: Sequence[Message]) -> str:
    """A stable digest of a conversation (for per-conversation seeds)."""
    blob = json.dumps([[m["role"], m["content"]] for m in conversation], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop string, and whether one was found."""
    best = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (best == -1 or i < best):
            best = i
    if best == -1:
        return text, False
    return text[:best], True


def repeat_greedy(completion: Completion, n: int) -> list[Completion]:
    """Greedy decoding is deterministic: n samples are n copies of one."""
    return [Completion(completion.text, completion.num_tokens, completion.finish_reason)
            for _ in range(n)]


def finish_reason_of(raw: str | None) -> str:
    """Engine finish reasons mapped onto the contract: only a spent budget is "length"."""
    return "length" if raw == "length" else "stop"
