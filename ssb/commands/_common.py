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


def backend_opt_option() -> Any:
    return typer.Option(
        [], "--backend-opt", "-B",
        help="Backend option KEY=VALUE (repeatable), e.g. -B n_threads=2 -B base_url=http://127.0.0.1:8000/v1",
    )


def parse_backend_options(items: list[str] | None) -> dict[str, Any]:
    """``["n_threads=2", "base_url=a,b"]`` -> {"n_threads": 2, "base_url": "a,b"} (ints/floats/bools
    parsed; everything else stays a string)."""
    from ssb.errors import SsbError

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SsbError(f"--backend-opt expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = _parse_scalar(value.strip())
    return out


def _parse_scalar(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def load_backend(name: str, model: str, adapter: str | None = None,
                 options: dict[str, Any] | None = None):
    """Create a backend through the registry (the stages never import a backend plugin)."""
    from ssb.plugins import get_registry

    factory = get_registry().backend(name)
    return factory.create(model, adapter=adapter, **(options or {}))
