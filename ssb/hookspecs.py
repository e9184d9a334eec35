"""The hook kinds a plugin can implement: what each offers, who calls it, and when.

Every ``register_*`` hook receives a ``register`` callable and calls it once per thing it offers.
The hook names *what kind of thing* is registered; :class:`ssb.plugins.Registry` decides lookup
by name, duplicates (the first registered wins; first-party plugins register first) and errors.
All hooks are called by :func:`ssb.plugins.get_registry`, once per process, in plugin
registration order; every implementation's result is collected (none is ``firstresult``), and
an implementation that raises is reported by plugin name and skipped.  Implementations receive
only the arguments they name, so a spec may gain arguments later without breaking a plugin.

A hook implementation whose name matches no spec here (``register_loss`` for
``register_losses``) is reported by ``ssb plugins`` and never called.

The things registered are the small dataclasses / protocols in :mod:`ssb.types`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from ssb.types import BackendFactory, DatasetLoader, Loss, PromptTemplate, Verifier

hookspec = pluggy.HookspecMarker("ssb")
hookimpl = pluggy.HookimplMarker("ssb")


@hookspec
def register_datasets(register: Callable[["DatasetLoader"], None]) -> None:
    """Offer dataset loaders.

    :param register: call ``register(ssb.types.DatasetLoader(name, domain, load, ...))`` once per
        dataset.  ``load(source, split, skip_bad, filters)`` returns ``LoadResult``; bad rows
        raise :class:`ssb.errors.DataError` naming file, line and field.

    Called when the registry is built; used by ``ssb problems``, ``curate`` and ``eval``.
    """


@hookspec
def register_verifiers(register: Callable[["Verifier"], None]) -> None:
    """Offer answer verifiers, one per domain.

    :param register: call ``register(verifier)`` where ``verifier`` follows
        :class:`ssb.types.Verifier`: ``domain``, ``extract(response, strict=False)`` and
        ``verify(response, gold, *, strict=False, timeout=None) -> Verdict``.  Checked at load
        time: a verifier whose methods do not take ``strict``/``timeout`` is refused.

    Verifiers judge untrusted model text: they never execute it (a code domain runs it only in
    a sandbox) and return within a bounded time.
    """


@hookspec
def register_prompts(register: Callable[["PromptTemplate"], None]) -> None:
    """Offer prompt templates.

    :param register: call ``register(ssb.types.PromptTemplate(...))``; a template names its
        domain, and the first one registered for a domain is that domain's default.  Templates
        are versioned (``name@version``) and the id is recorded in every curated record.
    """


@hookspec
def register_backends(register: Callable[["BackendFactory"], None]) -> None:
    """Offer generation backends.

    :param register: call ``register(ssb.types.BackendFactory(name, create, options=...,
        adapter_formats=..., loads_hf_dirs=..., loads_gguf=...))``.  The factory declares its
        typed ``-B`` options (volatile, secret) and capabilities; stages ask capabilities, never
        names.  ``create(model, adapter=None, **options)`` returns a :class:`ssb.types.Backend`.
    """


@hookspec
def register_losses(register: Callable[["Loss"], None]) -> None:
    """Offer distillation losses.

    :param register: call ``register(ssb.types.Loss(name, fn, description, needs_teacher))``;
        ``fn(inputs: ssb.losses.LossInputs, **params)`` returns a scalar mean over solution
        tokens.  ``needs_teacher=False`` lets ``ssb distill --teacher none`` use it.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``ssb`` CLI.

    :param cli: the root :class:`typer.Typer` app; call ``cli.command(...)`` or
        ``cli.add_typer(...)``.  Called once when the CLI is built (not by the Python API).
    """
