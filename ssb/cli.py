"""The ``ssb`` command line: a thin typer layer; each command lives in ``ssb.commands.<name>``.

Command modules import their stage lazily, so ``ssb --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ssb import __version__
from ssb.errors import SsbError

COMMAND_MODULES = ("plugins", "problems", "verify", "generate", "curate", "distill",
                   "teacher_logits", "eval", "export", "run", "study")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ssb {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="ssb",
        help="Semantic Soft Bootstrapping: RL-free self-distillation for reasoning.\n\n"
        "Pipeline: curate -> distill -> eval (or all of it: ssb run).",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                     help="Print the version and exit."),
    ) -> None:
        """Semantic Soft Bootstrapping: RL-free self-distillation for reasoning."""

    for name in COMMAND_MODULES:
        importlib.import_module(f"ssb.commands.{name}").register(app)
    _plugin_commands(app)
    return app


def _plugin_commands(app: typer.Typer) -> None:
    """Let plugins add commands; one that raises is reported, the CLI keeps working."""
    from ssb.plugins import get_registry

    registry = get_registry()
    if registry.manager is None:
        return
    from ssb.plugins import call_hook

    for impl in registry.manager.hook.register_commands.get_hookimpls():
        try:
            call_hook(impl, cli=app)
        except Exception as exc:  # noqa: BLE001 - report and continue
            print(f"ssb: plugin {impl.plugin_name!r} failed to add commands: {exc}",
                  file=sys.stderr)


def _print_error(exc: SsbError) -> None:
    from rich.console import Console
    from rich.markup import escape

    from ssb.secrets import redact_text

    Console(stderr=True).print(f"[bold red]error:[/] {escape(redact_text(str(exc)))}",
                               highlight=False, markup=True, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    app = build_app()
    try:
        app(args=argv, prog_name="ssb", standalone_mode=True)
    except SsbError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except (OSError, RuntimeError) as exc:
        # A full disk outside a stage's output directory (stages report their own): one line
        # naming the file, not a traceback.  Any other error is a bug and keeps its traceback.
        from ssb.errors import DiskFull, disk_full_cause

        cause = disk_full_cause(exc)
        if cause is None:
            raise
        error = cause if isinstance(cause, DiskFull) else DiskFull(getattr(cause, "filename", None))
        _print_error(error)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
