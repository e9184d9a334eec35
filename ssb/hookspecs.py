"""The hook kinds a plugin can implement.

Every hook receives a ``register`` callable and calls it once per thing it offers.  The hook
names *what kind of thing* is registered; the :class:`ssb.plugins.Registry` decides lookup by
name, duplicates and errors.  All hooks are called by :func:`ssb.plugins.get_registry`, once per
process, and every implementation's result is collected (none is ``firstresult``).

The things registered are the small dataclasses / protocols in :mod:`ssb.types`.
"""

import pluggy

hookspec = pluggy.HookspecMarker("ssb")
hookimpl = pluggy.HookimplMarker("ssb")


@hookspec
def register_datasets(register):
    """Offer dataset loaders: ``register(ssb.types.DatasetLoader(...))`` once per dataset name."""


@hookspec
def register_verifiers(register):
    """Offer answer verifiers: ``register(verifier)`` where ``verifier`` follows
    :class:`ssb.types.Verifier` and its ``domain`` names the domain it judges."""


@hookspec
def register_prompts(register):
    """Offer prompt templates: ``register(ssb.types.PromptTemplate(...))``; a template names its
    domain, and the first one registered for a domain is that domain's default."""


@hookspec
def register_backends(register):
    """Offer generation backends: ``register(ssb.types.BackendFactory(name, create))`` where
    ``create(model, **options)`` returns an object following :class:`ssb.types.Backend`."""


@hookspec
def register_losses(register):
    """Offer distillation losses: ``register(ssb.types.Loss(name, fn, description))``."""


@hookspec
def register_commands(cli):
    """Add commands to the ``ssb`` CLI; ``cli`` is the root :class:`typer.Typer` app."""
