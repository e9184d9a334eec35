"""``ssb curate``: not built yet (see the issue tracker)."""

from __future__ import annotations

import typer

from ssb.errors import NotBuiltYet


def register(app: typer.Typer) -> None:
    @app.command("curate", context_settings={"allow_extra_args": True,
                                           "ignore_unknown_options": True})
    def _not_built(ctx: typer.Context) -> None:
        """(not built yet)"""
        raise NotBuiltYet("`ssb curate` is not built yet in this version of ssb")
