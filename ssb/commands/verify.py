"""``ssb verify``: judge responses against gold answers for a domain."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssb.commands._common import config_option, emit_json


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        domain: str = typer.Option(..., "--domain", help="Verifier domain (see `ssb plugins`)."),
        input: Optional[Path] = typer.Option(
            None, "--input", "-i", dir_okay=False,
            help="JSONL file; each line an object with 'response' and 'gold'."),
        gold: Optional[str] = typer.Option(None, "--gold", help="One gold answer (with --response)."),
        response: Optional[str] = typer.Option(None, "--response",
                                               help="One model response (with --gold)."),
        timeout: float = typer.Option(5.0, "--timeout", min=0.1,
                                      help="Seconds allowed per verification."),
        workers: Optional[int] = typer.Option(
            None, "--workers", "-w", min=0,
            help="Helper processes for --input files (default: one per core; 0: in-process)."),
        strict: bool = typer.Option(False, "--strict",
                                    help="Boxed answers only (no 'the answer is'/last-number fallback)."),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Verify responses: each output line is the input object plus 'extracted' and 'correct'.

        With --gold/--response prints one JSON object and exits 0 if correct, 1 if not.

        Examples:\n
          ssb verify --domain math --gold '\\frac12' --response '\\boxed{0.5}'\n
          ssb verify --domain gsm8k --input rollouts.jsonl --workers 2 > verdicts.jsonl
        """
        from ssb.errors import DataError, SsbError
        from ssb.journal import open_input, read_jsonl_numbered
        from ssb.verification import verify_batch

        if input is None:
            if gold is None or response is None:
                raise SsbError("give --input FILE.jsonl, or both --gold and --response")
            verdict = verify_batch(domain, [(response, gold)], timeout=timeout, strict=strict)[0]
            out = {"response": response, "gold": gold, **verdict.to_dict()}
            emit_json(out)
            raise typer.Exit(0 if verdict.correct else 1)
        if gold is not None or response is not None:
            raise SsbError("--input cannot be combined with --gold/--response")
        open_input(input, "input file").close()  # missing, a FIFO, a /proc file: one line
        rows: list[dict] = []
        lines: list[int] = []
        number = 0
        for number, obj in read_jsonl_numbered(input, what="input file"):
            for key in ("response", "gold"):
                value = obj.get(key)
                if isinstance(value, (int, float)) and key == "gold" and not isinstance(value, bool):
                    obj[key] = value = _number_text(value)
                if not isinstance(value, str):
                    what = "missing" if value is None else f"not a string ({type(value).__name__})"
                    raise DataError(f"field {key!r} is {what}", path=str(input), line=number,
                                    field=key)
            rows.append(obj)
            lines.append(number)
        verdicts = verify_batch(domain, [(r["response"], r["gold"]) for r in rows],
                                workers=workers, timeout=timeout, strict=strict)
        for obj, verdict in zip(rows, verdicts):
            out = {**obj, "extracted": verdict.extracted, "correct": verdict.correct}
            if verdict.error:
                out["error"] = verdict.error
            if verdict.detail:
                out["detail"] = verdict.detail
            emit_json(out)


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
