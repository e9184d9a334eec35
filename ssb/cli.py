"""The ``ssb`` command line: a thin typer layer; each command lives in ``ssb.commands.<name>``.

Command modules import their stage lazily, so ``ssb --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
import sys

import click
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


def one_line(text: str) -> str:
    """``text`` as one line: a message of several lines (a list of changed settings, a hint on
    its own line) is joined, so every error is exactly one ``error:`` line to read and grep."""
    out = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            out += ("" if not out else " " if out[-1] in ".:;,!?" else "; ") + part
    return out


def _print_error(exc: BaseException | str) -> None:
    from rich.console import Console
    from rich.markup import escape

    from ssb.secrets import redact_text

    Console(stderr=True).print(f"[bold red]error:[/] {escape(one_line(redact_text(str(exc))))}",
                               highlight=False, markup=True, soft_wrap=True)


# click's exception classes: typer may carry its own copy of click (typer._click), whose
# classes are not click's; both are caught, found through typer's public BadParameter.
_CLICK_ERRORS = tuple({click.ClickException,
                       *(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")})
_ABORTS = tuple({click.exceptions.Abort, typer.Abort})


def _usage_error(exc: Exception) -> str:
    """click's usage error (a bad integer, an unknown flag, a missing option) as the text of one
    line, with where to look instead of typer's boxed usage screen."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command_path:
        message += f" (see `{ctx.command_path} --help`)"
    return message


def main(argv: list[str] | None = None) -> None:
    from ssb.secrets import learn_argv, mask_streams

    # Secrets on the command line are learned first, and every line this process prints goes
    # through the mask: a library that mangles a URL in its message cannot leak its password.
    learn_argv(sys.argv[1:] if argv is None else argv)
    mask_streams()
    try:
        from ssb.environment import check_environment

        check_environment()  # a bad SSB_* value: one line naming it, before anything runs
        app = build_app()
        # standalone_mode=False: click's own errors come here as exceptions, to be printed as
        # one `error:` line like every other error, not as typer's boxed usage screen.
        code = app(args=argv, prog_name="ssb", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except _CLICK_ERRORS as exc:  # UsageError, BadParameter, NoSuchOption, ...
        if type(exc).__name__ == "NoArgsIsHelpError":  # `ssb` alone: the help, as before
            print(exc.format_message(), file=sys.stderr)
            sys.exit(exc.exit_code)
        _print_error(_usage_error(exc))
        sys.exit(2)
    except _ABORTS:  # Ctrl-C at a prompt, as click prints it
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
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
