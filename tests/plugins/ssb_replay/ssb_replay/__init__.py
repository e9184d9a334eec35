"""Test-only ssb plugin: ``record`` a real backend's completions once, ``replay`` them later.

It stands in for the *engine* in fast tests (the selection, verification, journal and resume
logic under test are the real ones).  Registered through the ordinary ``ssb`` entry point.

* ``record``: ``--backend record -B inner=llama.cpp -B recording=FILE.jsonl [inner options]``
  wraps a real backend (looked up in the registry) and appends one JSON line per conversation:
  ``{"messages", "params", "completions"}``.
* ``replay``: ``--backend replay --model FILE.jsonl [-B delay=SECONDS]`` answers each
  conversation with the completions recorded for the same messages and temperature.  A
  conversation that was never recorded raises ``KeyError`` (a backend failure, as a real engine
  error would be); ``delay`` sleeps per ``generate`` call so tests can kill a run mid-way.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ssb.hookspecs import hookimpl
from ssb.records import Completion, SamplingParams
from ssb.types import BackendFactory, BackendOption


def conversation_key(messages: Sequence[dict], temperature: float) -> str:
    """Recording lookup key: the exact messages and the sampling temperature."""
    blob = json.dumps([list(messages), round(float(temperature), 6)], sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_recording(path: str | os.PathLike) -> dict[str, list[Completion]]:
    table: dict[str, list[Completion]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            key = conversation_key(row["messages"], row["params"]["temperature"])
            table.setdefault(key, []).extend(Completion.from_dict(c) for c in row["completions"])
    return table


class ReplayBackend:
    name = "replay"

    def __init__(self, recording: str, delay: float = 0.0):
        self.path = Path(recording)
        if not self.path.is_file():
            raise FileNotFoundError(f"replay recording not found: {recording}")
        self.table = load_recording(self.path)
        self.delay = float(delay)
        self.calls: list[int] = []  # conversations per generate call (tests check batching)

    def generate(self, conversations, params: SamplingParams, progress=None):
        self.calls.append(len(conversations))
        if self.delay:
            time.sleep(self.delay)
        out = []
        for messages in conversations:
            key = conversation_key(messages, params.temperature)
            recorded = self.table.get(key)
            if recorded is None:
                raise KeyError(f"conversation not in recording {self.path.name} "
                               f"(T={params.temperature}): {messages[-1]['content'][:60]!r}")
            if len(recorded) < params.n:
                raise KeyError(f"recording has {len(recorded)} completions, {params.n} asked")
            out.append([Completion(c.text, c.num_tokens, c.finish_reason)
                        for c in recorded[: params.n]])
            if progress is not None:
                progress(params.n)
        return out

    def close(self) -> None:
        pass


class RecordBackend:
    name = "record"

    def __init__(self, inner: Any, recording: str):
        self.inner = inner
        self.path = Path(recording)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def generate(self, conversations, params: SamplingParams, progress=None):
        result = self.inner.generate(conversations, params, progress)
        with open(self.path, "a", encoding="utf-8") as f:
            for messages, completions in zip(conversations, result):
                f.write(json.dumps({
                    "messages": list(messages),
                    "params": params.to_dict(),
                    "completions": [c.to_dict() for c in completions],
                }, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return result

    def close(self) -> None:
        self.inner.close()


def _create_replay(model: str, adapter: str | None = None, **options: Any) -> ReplayBackend:
    return ReplayBackend(model, **options)


def _create_record(model: str, adapter: str | None = None, *, inner: str, recording: str,
                   **options: Any) -> RecordBackend:
    from ssb.plugins import get_registry

    wrapped = get_registry().backend(inner).create(model, adapter=adapter, **options)
    return RecordBackend(wrapped, recording)


_INNER_OPTIONS = (  # passed through to the wrapped backend (llama.cpp when recording)
    BackendOption("n_threads", int, None, "inner backend threads", volatile=True),
    BackendOption("n_ctx", int, None, "inner backend context"),
    BackendOption("n_batch", int, None, "inner backend batch", volatile=True),
    BackendOption("n_parallel", int, None, "inner backend sequences per decode"),
)


@hookimpl
def register_backends(register):
    register(BackendFactory(
        "replay", _create_replay,
        "test only: replays recorded completions (model = recording.jsonl)",
        options=(BackendOption("delay", float, 0.0, "seconds per call", volatile=True),),
        adapter_formats=frozenset({"peft", "gguf"})))
    register(BackendFactory(
        "record", _create_record,
        "test only: wraps -B inner=BACKEND and records to -B recording=FILE",
        options=(BackendOption("inner", str, None, "the backend to record"),
                 BackendOption("recording", str, None, "where to record", volatile=True),
                 *_INNER_OPTIONS),
        adapter_formats=frozenset({"gguf"}), loads_hf_dirs=False, loads_gguf=True))
