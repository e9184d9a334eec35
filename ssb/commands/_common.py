"""What the command modules share: stage commands derived from config dataclasses, the event
renderer (progress bars on a terminal, one status line every few seconds otherwise), JSON out.

A stage command is generated from its config class (:func:`stage_command`): every field
declared with :func:`ssb.options.option` becomes a flag with the field's help, default, bounds
and short name; ``--config FILE.toml`` and ``--preset NAME`` come for free, and the values are
resolved by :func:`ssb.options.resolve` (defaults < preset < file < explicit flags).
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer

from ssb.events import Event, EventCallback


def emit_json(obj: Any) -> None:
    """One JSON line on stdout (lone surrogates from model text escaped, never a crash)."""
    from ssb.journal import json_line

    sys.stdout.write(json_line(obj))


def load_backend(name: str, model: str, adapter: str | None, items: list[str] | None):
    """A backend through the registry, its ``-B`` options typed by the backend's schema."""
    from ssb.plugins import get_registry

    factory = get_registry().backend(name)
    return factory.create(model, adapter=adapter, **factory.parse_options(items))


# -- stage commands -------------------------------------------------------------------------------

_EXPLICIT = ("COMMANDLINE", "ENVIRONMENT")


def _annotation(spec: Any) -> Any:
    base = spec.base_type
    if base in (list, dict):
        return List[str]
    if base not in (str, int, float, bool):
        # Paths too: typer would turn `--out ""` into Path("") == "." (the working directory);
        # as text, the config's own coercion sees the empty value and refuses it.
        base = str
    return Optional[base] if spec.optional or spec.required else base


def _default(spec: Any) -> Any:
    from dataclasses import MISSING

    if spec.default is MISSING:
        return None
    if spec.base_type is dict:
        return [f"{k}={v}" for k, v in (spec.default or {}).items()]
    return spec.default


@contextmanager
def deprecations() -> Iterator[None]:
    """An old option used (``--force``): one ``warning:`` line on stderr per message, the
    command goes on.  Other warnings pass through as they would."""
    import warnings

    from ssb.options import SsbDeprecationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SsbDeprecationWarning)
        yield
    seen = set()
    for w in caught:
        if issubclass(w.category, SsbDeprecationWarning):
            if str(w.message) not in seen:
                seen.add(str(w.message))
                typer.echo(f"warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def help_markup(text: str) -> str:
    """``text`` for a help screen: typer renders help as rich markup, where ``[curate]`` or
    ``[required]`` is a style tag and vanishes; escaped, it prints as written."""
    from rich.markup import escape

    return escape(text)


def stage_command(app: typer.Typer, name: str, cls: type, handler: Callable[..., None], *,
                  extra: list[tuple[str, Any, Any]] = (), doc: str = "",
                  nested: tuple[str, ...] = (), section: str | None = None) -> None:
    """Register ``ssb <name>``: one flag per field of ``cls``, plus ``--config``/``--preset`` and
    ``extra`` (name, annotation, typer.Option or typer.Argument) parameters for display-only
    switches and positional arguments.  ``section``: the ``--config`` file's table for this
    command when it is not ``cls.COMMAND`` (``ssb eval compare`` reads ``[compare]``).

    ``handler(config, **extra_values)`` runs the stage with the resolved, validated config.
    """
    from ssb.options import resolve

    specs = [s for s in cls.specs() if s.cli]
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)]
    for s in specs:
        decls = [s.flag] + ([s.short] if s.short else [])
        if s.base_type is bool:
            decls = [f"{s.flag}/--no-{s.flag[2:]}"]
        default = _default(s)
        help_text = help_markup(s.help + (" [required]" if s.required else ""))
        params.append(inspect.Parameter(
            s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_annotation(s),
            default=typer.Option(default, *decls, help=help_text,
                                 metavar=s.metavar or ("PATH" if s.base_type is Path else None),
                                 show_default=not s.required and default not in (None, [], {}))))
    if cls.PRESETS:
        params.append(inspect.Parameter(
            "preset", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[str],
            default=typer.Option(None, "--preset",
                                 help=f"Preset: {', '.join(sorted(cls.PRESETS))} "
                                 "(config file keys and explicit flags win).")))
    params.append(inspect.Parameter(
        "config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[Path],
        default=typer.Option(None, "--config", dir_okay=False,
                             help="TOML file whose keys mirror the flags (flags win).")))
    for extra_name, annotation, opt in extra:
        params.append(inspect.Parameter(extra_name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        annotation=annotation, default=opt))
    extra_names = {e[0] for e in extra}

    def command(**kwargs: Any) -> None:
        ctx = kwargs.pop("ctx")
        preset = kwargs.pop("preset", None)
        config_file = kwargs.pop("config", None)
        flags = {}
        for s in specs:
            source = ctx.get_parameter_source(s.name)
            if source is not None and source.name in _EXPLICIT:
                flags[s.name] = kwargs[s.name]
        with deprecations():
            config = resolve(cls, preset=preset, file=config_file, flags=flags, nested=nested,
                             section=section)
        handler(config, **{k: v for k, v in kwargs.items() if k in extra_names})

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help_markup(doc)
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


# -- events -> progress ---------------------------------------------------------------------------

PROGRESS_INTERVAL_ENV = "SSB_PROGRESS_INTERVAL"


@contextmanager
def render_events(enabled: bool = True, interval: float = 10.0) -> Iterator[EventCallback]:
    """An event callback that draws progress on stderr.

    On a terminal: rich progress bars.  Otherwise (a log file, nohup, CI): one line per running
    task every ``interval`` seconds (``$SSB_PROGRESS_INTERVAL`` overrides it) -- done/total,
    rate, ETA -- also while no event arrives (one slow batch), so a long stage is never silent.
    ``log`` events are printed as lines either way; ``enabled=False`` keeps only those.
    """
    if enabled and sys.stderr.isatty():
        with _rich_renderer() as callback:
            yield callback
        return
    from ssb.environment import env_value

    # Checked: text, NaN or a near-zero interval that would flood the log is one error line.
    interval = env_value(PROGRESS_INTERVAL_ENV, interval)
    renderer = _LineRenderer(enabled, interval)
    renderer.start()
    try:
        yield renderer
    finally:
        renderer.stop()


class _LineRenderer:
    def __init__(self, enabled: bool, interval: float):
        self.enabled = enabled
        self.interval = interval
        self.tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Repeat each running task's line when no event has printed it for ``interval``."""
        if self.enabled:
            self._thread = threading.Thread(target=self._heartbeat, name="ssb-progress",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _heartbeat(self) -> None:
        while not self._stopped.wait(min(1.0, self.interval / 2)):
            with self._lock:
                now = time.monotonic()
                for name, task in self.tasks.items():
                    if not task["ended"] and now - task["last"] >= self.interval:
                        task["last"] = now
                        print(self._line(name, task, now, False), file=sys.stderr, flush=True)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._render(event)

    def _render(self, event: Event) -> None:
        if event.kind == "log":
            if event.message:
                print(event.message, file=sys.stderr, flush=True)
            return
        if not self.enabled:
            return
        now = time.monotonic()
        task = self.tasks.setdefault(event.task, {"done": 0, "total": None, "start": now,
                                                  "start_done": 0, "last": 0.0, "info": "",
                                                  "ended": False})
        if event.kind == "start":
            task.update(done=event.done, total=event.total, start=now, start_done=event.done,
                        last=0.0, ended=False)
        task["done"] += event.advance
        if event.info:
            task["info"] = event.info
        final = event.kind == "end"
        if final:
            task["ended"] = True
        if final or now - task["last"] >= self.interval:
            task["last"] = now
            print(self._line(event.task, task, now, final), file=sys.stderr, flush=True)

    @staticmethod
    def _line(name: str, task: dict[str, Any], now: float, final: bool) -> str:
        done, total = task["done"], task["total"]
        elapsed = max(now - task["start"], 1e-9)
        rate = (done - task["start_done"]) / elapsed
        parts = [f"[{name}] {done}/{total if total is not None else '?'}"]
        if total:
            parts.append(f"({100 * done / total:.0f}%)")
        parts.append(f"{rate:.2f}/s" if rate < 10 else f"{rate:.0f}/s")
        if total and rate > 0 and not final:
            parts.append(f"ETA {_clock((total - done) / rate)}")
        parts.append(f"elapsed {_clock(elapsed)}")
        if final:
            parts.append("done")
        line = " ".join(parts)
        return f"{line} | {task['info']}" if task["info"] else line


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@contextmanager
def _rich_renderer() -> Iterator[EventCallback]:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                  console=console, transient=False) as progress:
        ids: dict[str, Any] = {}

        def callback(event: Event) -> None:
            if event.kind == "log":
                if event.message:
                    progress.console.print(event.message, highlight=False, markup=False)
                return
            if event.kind == "start" or event.task not in ids:
                if event.task in ids:
                    progress.update(ids[event.task], total=event.total, completed=event.done)
                else:
                    ids[event.task] = progress.add_task(event.task, total=event.total,
                                                        completed=event.done, info="")
            task = ids[event.task]
            if event.advance:
                progress.update(task, advance=event.advance)
            if event.info:
                progress.update(task, info=event.info)

        yield callback


__all__ = ["emit_json", "load_backend", "render_events",
           "stage_command"]
