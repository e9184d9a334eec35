"""``ssb problems``: print a dataset's normalized problem records."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ssb.commands._common import config_option, emit_json


def parse_filters(items: list[str] | None) -> dict[str, str]:
    """``["subject=Algebra", "level=5"]`` -> dict; a malformed item is an SsbError."""
    from ssb.errors import SsbError

    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SsbError(f"--filter expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def register(app: typer.Typer) -> None:
    @app.command("problems")
    def problems(
        dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see `ssb plugins`)."),
        source: Optional[str] = typer.Option(
            None, "--source", help="Local .jsonl/.json/.parquet file or folder, or a hub id "
            "(default: the dataset's own source)."),
        split: Optional[str] = typer.Option(None, "--split", help="Split (default: the "
                                            "dataset's first split)."),
        limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0,
                                            help="Print at most N problems."),
        as_json: bool = typer.Option(False, "--json", help="Print JSONL, one problem per line."),
        skip_bad: bool = typer.Option(False, "--skip-bad",
                                      help="Skip bad rows (counted on stderr) instead of failing."),
        filters: list[str] = typer.Option([], "--filter", help="KEY=VALUE dataset filter "
                                          "(repeatable), e.g. subject=Algebra, level=5."),
        config: Optional[Path] = config_option(),
    ) -> None:
        """Print the normalized problems (id, question, gold, metadata) of a dataset.

        Examples:\n
          ssb problems --dataset gsm8k --source ../shared/data/gsm8k --split test --limit 3\n
          ssb problems --dataset math500 --source data/math500/test.jsonl --json\n
          ssb problems --dataset math --filter subject=Algebra --filter level=5 --json\n
          ssb problems --dataset arithmetic --split test --json
        """
        import sys

        from ssb.plugins import get_registry

        loader = get_registry().dataset(dataset)
        split = split or loader.splits[0]
        result = loader.load(source, split, skip_bad=skip_bad, filters=parse_filters(filters))
        records = result.problems[:limit] if limit is not None else result.problems
        if as_json:
            for p in records:
                emit_json(p.to_dict())
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table(title=f"{dataset} (split {split}): {len(result.problems)} problems")
            table.add_column("id", overflow="fold")
            table.add_column("question", overflow="fold")
            table.add_column("gold", overflow="fold")
            for p in records:
                q = p.question if len(p.question) <= 300 else p.question[:297] + "..."
                table.add_row(p.id, q, p.gold)
            Console().print(table)
        if skip_bad or result.skipped:
            print(f"skipped {len(result.skipped)} bad row(s)", file=sys.stderr)
            for bad in result.skipped[:20]:
                print(f"  {bad.path}:{bad.line}: {bad.reason} (field {bad.field!r})",
                      file=sys.stderr)
