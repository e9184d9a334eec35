"""``ssb generate``: sample from any backend (handy for users; the smoke test of every backend)."""

from __future__ import annotations

from typing import Optional

import typer

from ssb.commands._common import backend_opt_option, config_option


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        backend: str = typer.Option("transformers", "--backend", "-b",
                                    help="Backend name: transformers, llama.cpp, openai, vllm, "
                                         "or one a plugin adds (see `ssb plugins`)."),
        model: str = typer.Option("default", "--model", "-m",
                                  help="Hub id, local HF directory, local .gguf file, or "
                                       "'default' (the embedded small model)."),
        adapter: Optional[str] = typer.Option(None, "--adapter",
                                              help="LoRA adapter: a peft directory "
                                                   "(transformers, vllm) or a GGUF LoRA file "
                                                   "(llama.cpp)."),
        prompt: str = typer.Option(..., "--prompt", "-p", help="The user message."),
        system: Optional[str] = typer.Option(None, "--system",
                                             help="An optional system message."),
        n: int = typer.Option(1, "-n", "--n", help="Samples to draw."),
        seed: int = typer.Option(0, "--seed", help="Sampling seed."),
        max_tokens: int = typer.Option(256, "--max-tokens", help="Max new tokens per sample."),
        temperature: float = typer.Option(0.0, "--temperature", "-t",
                                          help="0 means greedy."),
        top_p: float = typer.Option(1.0, "--top-p"),
        top_k: int = typer.Option(0, "--top-k", help="0 means off."),
        stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
        backend_opt: list[str] = backend_opt_option(),
        config: Optional[str] = config_option(),
    ) -> None:
        """Sample completions for one prompt from a backend, through the model's chat template.

        Examples:\n
          ssb generate --backend llama.cpp --model default --prompt "What is 17*23?" -n 2\n
          ssb generate -b transformers -m Qwen/Qwen2.5-3B-Instruct --adapter runs/d/adapter --prompt "..." --json\n
          ssb generate -b openai -m served-name -B base_url=http://127.0.0.1:8000/v1 --prompt "..."
        """
        import sys
        import time

        from ssb.commands._common import emit_json, load_backend, render_events
        from ssb.events import Reporter
        from ssb.records import SamplingParams

        messages = ([{"role": "system", "content": system}] if system else []) + \
            [{"role": "user", "content": prompt}]
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k,
                                max_new_tokens=max_tokens, stop=list(stop), seed=seed)
        params.check()  # NaN, a top_p of 0, ...: one line before the model loads
        t0 = time.perf_counter()
        engine = load_backend(backend, model, adapter, backend_opt)
        loaded = time.perf_counter()
        try:
            with render_events(not json_out and sys.stderr.isatty()) as on_event:
                report = Reporter("generate", on_event)
                report.start(f"generate ({backend})", total=n)
                result = engine.generate([messages], params, progress=report.advance)
                report.end()
        finally:
            engine.close()
        done = time.perf_counter()
        completions = result[0]
        if json_out:
            emit_json({
                "backend": backend, "model": model, "adapter": adapter,
                "params": params.to_dict(),
                "completions": [c.to_dict() for c in completions],
                "seconds": {"load": round(loaded - t0, 3), "generate": round(done - loaded, 3)},
            })
            return
        for i, c in enumerate(completions):
            if len(completions) > 1:
                typer.echo(f"--- sample {i + 1}/{len(completions)} "
                           f"({c.num_tokens} tokens, {c.finish_reason}) ---")
            typer.echo(c.text)
        tokens = sum(c.num_tokens for c in completions)
        typer.echo(f"[{backend}] {len(completions)} completion(s), {tokens} tokens, "
                   f"load {loaded - t0:.1f}s, generate {done - loaded:.1f}s", err=True)
