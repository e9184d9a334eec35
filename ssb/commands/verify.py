"""``ssb verify``: judge responses against gold answers for a domain.

The flags are :class:`VerifyConfig`'s fields (shared ones from :mod:`ssb.option_groups`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import typer

from ssb.commands._common import emit_json
from ssb.option_groups import DOMAIN, WORKERS
from ssb.options import StageConfig, option

DOC = """Verify responses: each output line is the input object plus 'extracted' and 'correct'.

With --gold/--response prints one JSON object and exits 0 if correct, 1 if not.

Examples:\n
  ssb verify --domain math --gold '\\frac12' --response '\\boxed{0.5}'\n
  ssb verify --domain gsm8k --input rollouts.jsonl --workers 2 > verdicts.jsonl
"""


@dataclass
class VerifyConfig(StageConfig):
    """What ``ssb verify`` takes: its flags and the keys of its ``--config`` file."""

    COMMAND: ClassVar[str] = "verify"

    domain: str = DOMAIN(note="its verifier")
    input: Path | None = option(None, short="-i", metavar="PATH",
                                help="JSONL file; each line an object with 'response' and "
                                "'gold'.")
    gold: str | None = option(None, help="One gold answer (with --response).")
    response: str | None = option(None, help="One model response (with --gold).")
    timeout: float = option(5.0, ge=0.1, help="Seconds allowed per verification.")
    workers: int | None = WORKERS()
    strict: bool = option(False, help="Boxed answers only (no 'the answer is'/last-number "
                          "fallback).")

    def check(self) -> None:
        from ssb.options import ConfigError

        if self.input is None and (self.gold is None or self.response is None):
            raise ConfigError("give --input FILE.jsonl, or both --gold and --response")
        if self.input is not None and (self.gold is not None or self.response is not None):
            raise ConfigError("--input cannot be combined with --gold/--response")


def register(app: typer.Typer) -> None:
    from ssb.commands._common import stage_command

    stage_command(app, "verify", VerifyConfig, _verify, doc=DOC)


def _verify(config: VerifyConfig) -> None:
    from ssb.errors import DataError
    from ssb.journal import open_input, read_jsonl_numbered
    from ssb.verification import verify_batch

    domain, input, gold, response = config.domain, config.input, config.gold, config.response
    timeout, workers, strict = config.timeout, config.workers, config.strict

    if input is None:  # both --gold and --response (VerifyConfig.check)
        verdict = verify_batch(domain, [(response, gold)], timeout=timeout, strict=strict)[0]
        out = {"response": response, "gold": gold, **verdict.to_dict()}
        emit_json(out)
        raise typer.Exit(0 if verdict.correct else 1)
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
