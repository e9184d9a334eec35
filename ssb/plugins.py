"""The plugin manager and the registry built from it.

Plugins come from the ``ssb`` entry-point group; the core's own default plugins are registered
through the same manager, so first-party code gets no back door.  A plugin that fails to import
(or whose hook raises) is reported by name in :attr:`Registry.errors` and skipped, and the rest
keep working.  ``SSB_LOAD_PLUGINS`` (comma-separated entry-point names) is an allow-list; set it
to an empty string to load no external plugin at all.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy

from ssb import hookspecs
from ssb.errors import SsbError
from ssb.types import BackendFactory, DatasetLoader, Loss, PromptTemplate, Verifier

ENTRY_POINT_GROUP = "ssb"
# Modules of the core that implement hooks, registered exactly like external plugins.
DEFAULT_PLUGINS = ("ssb.default_plugins.losses",)
KINDS = ("datasets", "verifiers", "prompts", "backends", "losses")


@dataclass
class PluginInfo:
    name: str
    version: str
    distribution: str
    registers: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    commands: bool = False


@dataclass
class PluginError:
    name: str
    distribution: str
    error: str


@dataclass
class Registry:
    """Everything the loaded plugins offered, looked up by name."""

    datasets: dict[str, DatasetLoader] = field(default_factory=dict)
    verifiers: dict[str, Verifier] = field(default_factory=dict)
    prompts: dict[str, list[PromptTemplate]] = field(default_factory=dict)  # domain -> templates
    backends: dict[str, BackendFactory] = field(default_factory=dict)
    losses: dict[str, Loss] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    errors: list[PluginError] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None

    # -- lookups with errors that list what exists ------------------------------------------
    def dataset(self, name: str) -> DatasetLoader:
        return _lookup(self.datasets, name, "dataset")

    def verifier(self, domain: str) -> Verifier:
        return _lookup(self.verifiers, domain, "verifier for domain")

    def backend(self, name: str) -> BackendFactory:
        return _lookup(self.backends, name, "backend")

    def loss(self, name: str) -> Loss:
        return _lookup(self.losses, name, "loss")

    def template(self, domain: str, name: str | None = None) -> PromptTemplate:
        """The domain's default template, or the one called ``name`` (``name`` or ``name@ver``)."""
        templates = self.prompts.get(domain)
        if not templates:
            raise SsbError(
                f"no prompt template for domain {domain!r}; domains with templates: "
                f"{sorted(self.prompts) or 'none'}"
            )
        if name is None:
            return templates[0]
        for t in templates:
            if name in (t.name, t.id):
                return t
        raise SsbError(
            f"no prompt template {name!r} for domain {domain!r}; "
            f"known: {[t.id for t in templates]}"
        )

    def domains(self) -> list[str]:
        return sorted(self.verifiers)

    def versions(self) -> dict[str, str]:
        """Distribution name -> version of every loaded plugin (for manifests)."""
        return {p.distribution: p.version for p in self.plugins}

    def report(self) -> dict[str, Any]:
        """What ``ssb plugins --json`` prints."""
        return {
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "registers": p.registers,
                    "commands": p.commands,
                }
                for p in self.plugins
            ],
            "errors": [e.__dict__ for e in self.errors],
        }


def _lookup(table: dict[str, Any], name: str, what: str):
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none (is the plugin installed?)"
        raise SsbError(f"unknown {what} {name!r}; known: {known}") from None


def _allow_list() -> set[str] | None:
    raw = os.environ.get("SSB_LOAD_PLUGINS")
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _short_error(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def build_manager() -> tuple[pluggy.PluginManager, dict[str, tuple[str, str]], list[PluginError]]:
    """Load default plugins and entry points; returns the manager, name -> (dist, version) and
    the plugins that failed to import."""
    from ssb import __version__

    pm = pluggy.PluginManager("ssb")
    pm.add_hookspecs(hookspecs)
    dists: dict[str, tuple[str, str]] = {}
    errors: list[PluginError] = []
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        dists[module_name] = ("ssb", __version__)
    allowed = _allow_list()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.has_plugin(ep.name) or ep.name in dists:
            continue  # the same distribution seen twice on sys.path
        dist_name = ep.dist.name if ep.dist else "?"
        dist_version = ep.dist.version if ep.dist else "?"
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the CLI down
            errors.append(PluginError(ep.name, dist_name, _short_error(exc)))
            continue
        dists[ep.name] = (dist_name, dist_version)
    return pm, dists, errors


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use (never at import time)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = _build_registry()
    return _REGISTRY


def _build_registry() -> Registry:
    pm, dists, errors = build_manager()
    reg = Registry(errors=errors, manager=pm)
    infos: dict[str, PluginInfo] = {}
    for name, (dist, version) in dists.items():
        infos[name] = PluginInfo(name=name, version=version, distribution=dist)

    def collector(kind: str, plugin_name: str) -> Callable[[Any], None]:
        def register(thing: Any) -> None:
            key, table = _table_for(reg, kind, thing)
            if kind == "prompts":
                table.setdefault(key, []).append(thing)
                label = thing.id
            else:
                if key in table:
                    errors.append(
                        PluginError(plugin_name, infos[plugin_name].distribution,
                                    f"duplicate {kind[:-1]} {key!r} ignored (first one wins)")
                    )
                    return
                table[key] = thing
                label = key
            infos[plugin_name].registers[kind].append(label)

        return register

    broken: set[str] = set()
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}")
        for impl in caller.get_hookimpls():
            if impl.plugin_name in broken:
                continue
            try:
                impl.function(register=collector(kind, impl.plugin_name))
            except Exception as exc:
                broken.add(impl.plugin_name)
                errors.append(PluginError(impl.plugin_name,
                                          infos[impl.plugin_name].distribution,
                                          f"register_{kind} failed: {_short_error(exc)}"))
    for impl in pm.hook.register_commands.get_hookimpls():
        infos[impl.plugin_name].commands = True
    reg.plugins = [i for n, i in infos.items() if n not in broken]
    return reg


def _table_for(reg: Registry, kind: str, thing: Any) -> tuple[str, dict]:
    if kind == "datasets":
        _expect(thing, DatasetLoader)
        return thing.name, reg.datasets
    if kind == "verifiers":
        if not isinstance(thing, Verifier):
            raise TypeError(f"a verifier needs .domain, .extract() and .verify(), got {thing!r}")
        return thing.domain, reg.verifiers
    if kind == "prompts":
        _expect(thing, PromptTemplate)
        return thing.domain, reg.prompts
    if kind == "backends":
        _expect(thing, BackendFactory)
        return thing.name, reg.backends
    if kind == "losses":
        _expect(thing, Loss)
        return thing.name, reg.losses
    raise ValueError(kind)


def _expect(thing: Any, cls: type) -> None:
    if not isinstance(thing, cls):
        raise TypeError(f"expected ssb.types.{cls.__name__}, got {type(thing).__name__}")
