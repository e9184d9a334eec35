"""``ssb problems``: print a dataset's normalized problem records.

The flags are :class:`ProblemsConfig`'s fields (shared ones from :mod:`ssb.option_groups`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import typer

from ssb.commands._common import emit_json
from ssb.option_groups import DATASET, FILTERS, SOURCE
from ssb.options import StageConfig, option

DOC = """Print the normalized problems (id, question, gold, metadata) of a dataset.

Examples:\n
  ssb problems --dataset gsm8k --source ../shared/data/gsm8k --split test --limit 3\n
  ssb problems --dataset math500 --source data/math500/test.jsonl --json\n
  ssb problems --dataset math --filter subject=Algebra --filter level=5 --json\n
  ssb problems --dataset arithmetic --split test --json
"""


@dataclass
class ProblemsConfig(StageConfig):
    """What ``ssb problems`` takes: its flags and the keys of its ``--config`` file."""

    COMMAND: ClassVar[str] = "problems"

    dataset: str = DATASET(note="`ssb plugins` lists them")
    source: str | None = SOURCE()
    split: str | None = option(None, help="Split (default: the dataset's first split).")
    limit: int | None = option(None, short="-n", ge=0, help="Print at most N problems.")
    skip_bad: bool = option(False, help="Skip bad rows (counted on stderr) instead of failing.")
    filters: dict[str, Any] = FILTERS()


def register(app: typer.Typer) -> None:
    from ssb.commands._common import stage_command

    stage_command(app, "problems", ProblemsConfig, _problems, doc=DOC, extra=[
        ("as_json", bool, typer.Option(False, "--json",
                                       help="Print JSONL, one problem per line."))])


def _problems(config: ProblemsConfig, as_json: bool) -> None:
    import sys

    from ssb.plugins import get_registry

    dataset, source, split, limit = config.dataset, config.source, config.split, config.limit
    skip_bad = config.skip_bad
    loader = get_registry().dataset(dataset)
    split = split or loader.splits[0]
    result = loader.load(source, split, skip_bad=skip_bad, filters=dict(config.filters))
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
