"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer

from ssb.config import config_option_callback


def config_option() -> Any:
    return typer.Option(
        None, "--config", callback=config_option_callback, is_eager=True,
        help="TOML file whose keys mirror this command's flags (flags win).",
        exists=False, dir_okay=False, show_default=False,
    )


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def params_of(ctx: typer.Context) -> dict[str, Any]:
    """The command's resolved parameters (after config defaults and flags), for manifests."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in ctx.params.items()}


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar; yields ``advance(n, **fields)`` usable as a backend progress callback."""
    if not enabled:
        yield lambda n=1, **_: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        transient=False, console=__import__("rich.console").console.Console(stderr=True),
    ) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            if info is not None:
                progress.update(task, advance=n, info=info)
            else:
                progress.update(task, advance=n)

        yield advance
