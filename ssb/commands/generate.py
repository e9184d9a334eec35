"""``ssb generate``: sample from any backend (handy for users; the smoke test of every backend).

The flags are :class:`GenerateConfig`'s fields (shared ones from :mod:`ssb.option_groups`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import typer

from ssb.option_groups import ADAPTER, BACKEND, BACKEND_OPTIONS, MODEL, SEED
from ssb.options import StageConfig, option

DOC = """Sample completions for one prompt from a backend, through the model's chat template.

Examples:\n
  ssb generate --backend llama.cpp --model default --prompt "What is 17*23?" -n 2\n
  ssb generate -b transformers -m Qwen/Qwen2.5-3B-Instruct --adapter runs/d/adapter --prompt "..." --json\n
  ssb generate -b openai -m served-name -B base_url=http://127.0.0.1:8000/v1 --prompt "..."
"""


@dataclass
class GenerateConfig(StageConfig):
    """What ``ssb generate`` takes: its flags and the keys of its ``--config`` file.  The
    sampling values are checked by :meth:`ssb.records.SamplingParams.check` (one rule for every
    command), before the model loads."""

    COMMAND: ClassVar[str] = "generate"

    prompt: str = option(short="-p", help="The user message.")
    backend: str = BACKEND("transformers")
    model: str = MODEL("default")
    adapter: str | None = ADAPTER()
    backend_options: dict[str, Any] = BACKEND_OPTIONS()
    system: str | None = option(None, help="An optional system message.")
    n: int = option(1, short="-n", help="Samples to draw.")
    seed: int = SEED(0, note="sampling")
    max_tokens: int = option(256, help="Max new tokens per sample.")
    temperature: float = option(0.0, short="-t", help="Sampling temperature; 0 means "
                                "greedy.")
    top_p: float = option(1.0, help="Nucleus sampling mass.")
    top_k: int = option(0, help="Top-k sampling; 0 means off.")
    stop: list[str] = option(default_factory=list, help="Stop string (repeatable).")


def register(app: typer.Typer) -> None:
    from ssb.commands._common import stage_command

    stage_command(app, "generate", GenerateConfig, _generate, doc=DOC, extra=[
        ("json_out", bool, typer.Option(False, "--json", help="Print one JSON object."))])


def _generate(config: GenerateConfig, json_out: bool) -> None:
    import sys
    import time

    from ssb.commands._common import emit_json, load_backend, render_events
    from ssb.events import Reporter
    from ssb.records import SamplingParams

    c = config
    messages = ([{"role": "system", "content": c.system}] if c.system else []) + \
        [{"role": "user", "content": c.prompt}]
    params = SamplingParams(n=c.n, temperature=c.temperature, top_p=c.top_p, top_k=c.top_k,
                            max_new_tokens=c.max_tokens, stop=list(c.stop), seed=c.seed)
    params.check()  # NaN, a top_p of 0, ...: one line before the model loads
    t0 = time.perf_counter()
    engine = load_backend(c.backend, c.model, c.adapter, c.backend_options)
    loaded = time.perf_counter()
    try:
        with render_events(not json_out and sys.stderr.isatty()) as on_event:
            report = Reporter("generate", on_event)
            report.start(f"generate ({c.backend})", total=c.n)
            result = engine.generate([messages], params, progress=report.advance)
            report.end()
    finally:
        engine.close()
    done = time.perf_counter()
    completions = result[0]
    if json_out:
        emit_json({
            "backend": c.backend, "model": c.model, "adapter": c.adapter,
            "params": params.to_dict(),
            "completions": [x.to_dict() for x in completions],
            "seconds": {"load": round(loaded - t0, 3), "generate": round(done - loaded, 3)},
        })
        return
    for i, x in enumerate(completions):
        if len(completions) > 1:
            typer.echo(f"--- sample {i + 1}/{len(completions)} "
                       f"({x.num_tokens} tokens, {x.finish_reason}) ---")
        typer.echo(x.text)
    tokens = sum(x.num_tokens for x in completions)
    typer.echo(f"[{c.backend}] {len(completions)} completion(s), {tokens} tokens, "
               f"load {loaded - t0:.1f}s, generate {done - loaded:.1f}s", err=True)
