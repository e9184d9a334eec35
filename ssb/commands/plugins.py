"""``ssb plugins``: what every loaded plugin registers, and which plugins failed to load."""

from __future__ import annotations

import typer

from ssb.commands._common import emit_json


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins(
        as_json: bool = typer.Option(False, "--json", help="Print JSON (the same data)."),
    ) -> None:
        """List installed plugins and what each registers per hook kind.

        Examples:\n
          ssb plugins\n
          ssb plugins --json | jq '.plugins[].name'
        """
        from ssb.plugins import KINDS, get_registry

        report = get_registry().report()
        if as_json:
            emit_json(report)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="ssb plugins")
        table.add_column("plugin")
        table.add_column("version")
        for kind in KINDS:
            table.add_column(kind)
        for p in report["plugins"]:
            table.add_row(f"{p['name']}\n[dim]{p['distribution']}[/]", p["version"],
                          *(", ".join(p["registers"][k]) for k in KINDS))
        console = Console()
        console.print(table)
        backends = Table(title="backends: capabilities and -B options")
        for col in ("backend", "adapters", "models", "options (volatile*, secret!)"):
            backends.add_column(col)
        for name, b in report["backends"].items():
            models = ", ".join(k for k, v in (("HF dirs", b["loads_hf_dirs"]),
                                              ("GGUF", b["loads_gguf"])) if v)
            options = ", ".join(f"{o['name']}:{o['type']}" + ("*" if o["volatile"] else "")
                                + ("!" if o["secret"] else "") for o in b["options"])
            backends.add_row(name, ", ".join(b["adapter_formats"]) or "-", models, options)
        console.print(backends)
        for err in report["errors"]:
            console.print(f"[red]failed:[/] {err['name']} ({err['distribution']}): {err['error']}",
                          highlight=False)
