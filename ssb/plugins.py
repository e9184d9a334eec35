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
    allow_list: set[str] | None = None  # SSB_LOAD_PLUGINS, when set

    # -- lookups with errors that list what exists ------------------------------------------
    def dataset(self, name: str) -> DatasetLoader:
        return self._lookup(self.datasets, name, "dataset")

    def verifier(self, domain: str) -> Verifier:
        return self._lookup(self.verifiers, domain, "verifier for domain")

    def backend(self, name: str) -> BackendFactory:
        return self._lookup(self.backends, name, "backend")

    def loss(self, name: str) -> Loss:
        return self._lookup(self.losses, name, "loss")

    def _lookup(self, table: dict[str, Any], name: str, what: str):
        try:
            return table[name]
        except KeyError:
            pass
        known = ", ".join(sorted(table)) or "none"
        hint = ""
        if self.allow_list is not None:
            installed = sorted(ep.name for ep in importlib.metadata.entry_points(
                group=ENTRY_POINT_GROUP))
            excluded = [n for n in installed if n not in self.allow_list]
            if excluded:
                hint = (f" (SSB_LOAD_PLUGINS={','.join(sorted(self.allow_list)) or '<empty>'} "
                        f"excludes the installed plugin(s) {', '.join(excluded)})")
        elif not table:
            hint = " (is the plugin installed?)"
        raise SsbError(f"unknown {what} {name!r}; known: {known}{hint}")

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
            "backends": {
                name: {
                    "description": f.description,
                    "adapter_formats": sorted(f.adapter_formats),
                    "loads_hf_dirs": f.loads_hf_dirs, "loads_gguf": f.loads_gguf,
                    "options": [{"name": o.name, "type": o.type.__name__,
                                 "default": o.default, "help": o.help,
                                 "volatile": o.volatile, "secret": o.secret}
                                for o in f.options],
                } for name, f in sorted(self.backends.items())
            },
            "errors": [e.__dict__ for e in self.errors],
        }


def _allow_list() -> set[str] | None:
    raw = os.environ.get("SSB_LOAD_PLUGINS")
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _short_error(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


# First-party distributions register before third-party ones, so a plugin that offers a thing
# under a built-in name never replaces it (the built-in wins, the newcomer is reported).
# Distributions are named softboot-<name> (PyPI's `ssb` and the `ssb-` prefix belong to others);
# the import packages (ssb, ssb_<name>) and the `ssb` command keep the short name.
CORE_DISTRIBUTION = "softboot"
FIRST_PARTY = (CORE_DISTRIBUTION, "softboot-backends", "softboot-gsm8k", "softboot-math",
               "softboot-code", "softboot-science", "softboot-arithmetic")


def _entry_points_in_order() -> list[importlib.metadata.EntryPoint]:
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))

    def key(ep: importlib.metadata.EntryPoint) -> tuple[int, str]:
        dist = ep.dist.name if ep.dist else ""
        rank = FIRST_PARTY.index(dist) if dist in FIRST_PARTY else len(FIRST_PARTY)
        return rank, ep.name

    return sorted(eps, key=key)


def build_manager() -> tuple[pluggy.PluginManager, dict[str, tuple[str, str]], list[PluginError]]:
    """Load default plugins and entry points; returns the manager, name -> (dist, version) and
    the plugins that failed to import or break the hook contract."""
    from ssb import __version__

    pm = pluggy.PluginManager("ssb")
    pm.add_hookspecs(hookspecs)
    dists: dict[str, tuple[str, str]] = {}
    errors: list[PluginError] = []
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        dists[module_name] = (CORE_DISTRIBUTION, __version__)
    allowed = _allow_list()
    for ep in _entry_points_in_order():
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
    for name, plugin in _EXTRA_PLUGINS.items():
        if not pm.has_plugin(name):
            pm.register(plugin, name=name)
            dists[name] = (f"<in-process: {name}>", "")
    errors.extend(_unknown_hooks(pm, dists))
    return pm, dists, errors


def _unknown_hooks(pm: pluggy.PluginManager,
                   dists: dict[str, tuple[str, str]]) -> list[PluginError]:
    """Hook implementations that match no hook spec (a misspelled ``register_loss``), by plugin:
    what pluggy's ``check_pending`` would raise for, reported instead of raised."""
    import difflib

    known = sorted(n for n in dir(hookspecs) if n.startswith("register_"))
    out = []
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or getattr(caller, "spec", None) is not None:
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; hooks: {', '.join(known)}"
            out.append(PluginError(impl.plugin_name, dists.get(impl.plugin_name, ("?", ""))[0],
                                   f"unknown hook {name!r} (not called){hint}"))
    return out


def call_hook(impl: Any, **kwargs: Any) -> Any:
    """Call one hook implementation the way pluggy does: only with the arguments it names, so a
    hook spec can gain arguments without breaking existing plugins."""
    return impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})


_REGISTRY: Registry | None = None
_EXTRA_PLUGINS: dict[str, Any] = {}  # added in-process with add_plugin (a notebook, a test)


def add_plugin(plugin: Any, name: str) -> Registry:
    """Load a plugin object (a module or an object with ``@hookimpl`` methods) in this process
    without packaging it, as pytest's ``-p`` does: it goes through the same plugin manager and
    checks as an entry point.  Returns the refreshed registry."""
    _EXTRA_PLUGINS[name] = plugin
    return get_registry(refresh=True)


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use (never at import time)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = _build_registry()
    return _REGISTRY


def _build_registry() -> Registry:
    pm, dists, errors = build_manager()
    reg = Registry(errors=errors, manager=pm, allow_list=_allow_list())
    infos: dict[str, PluginInfo] = {}
    for name, (dist, version) in dists.items():
        infos[name] = PluginInfo(name=name, version=version, distribution=dist)
    owners: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin that registered it

    def collector(kind: str, plugin_name: str) -> Callable[[Any], None]:
        def register(thing: Any) -> None:
            key, table = _table_for(reg, kind, thing)
            refused = _lookalike(kind, key, table, owners, infos) or (
                kind == "prompts" and _duplicate_prompt(thing, table.get(key, []), key))
            if refused:
                errors.append(PluginError(plugin_name, infos[plugin_name].distribution,
                                          refused))
                return
            if kind == "prompts":
                table.setdefault(key, []).append(thing)
                owners.setdefault((kind, key), plugin_name)
                label = thing.id
            else:
                if key in table:
                    first = owners[(kind, key)]
                    errors.append(PluginError(
                        plugin_name, infos[plugin_name].distribution,
                        f"duplicate {kind[:-1]} {key!r} refused: {infos[first].distribution} "
                        f"({first}) registered it first and keeps it"))
                    return
                table[key] = thing
                owners[(kind, key)] = plugin_name
                label = key
            infos[plugin_name].registers[kind].append(label)

        return register

    broken: set[str] = set()
    for kind in KINDS:
        caller = getattr(pm.hook, f"register_{kind}")
        # get_hookimpls() is in registration order (pluggy *calls* them in reverse); keep it so
        # the first registered -- first-party plugins come first -- keeps a contested name.
        for impl in caller.get_hookimpls():
            if impl.plugin_name in broken:
                continue
            try:
                call_hook(impl, register=collector(kind, impl.plugin_name))
            except Exception as exc:
                broken.add(impl.plugin_name)
                errors.append(PluginError(impl.plugin_name,
                                          infos[impl.plugin_name].distribution,
                                          f"register_{kind} failed: {_short_error(exc)}"))
    for impl in pm.hook.register_commands.get_hookimpls():
        infos[impl.plugin_name].commands = True
    reg.plugins = [i for n, i in infos.items() if n not in broken]
    return reg


def _lookalike(kind: str, key: Any, table: dict, owners: dict, infos: dict) -> str:
    """Why ``key`` is refused as a name (``""`` if it is not): empty, with spaces around it, or
    the same as a registered name but for case (``" Transformers"`` beside ``transformers``),
    which a user could not tell apart on the command line."""
    what = "prompt domain" if kind == "prompts" else kind[:-1]
    if not isinstance(key, str) or not key.strip() or key != key.strip():
        return f"{what} name {key!r} refused: a name is non-empty text without spaces around it"
    for other in table:
        if other != key and other.casefold() == key.casefold():
            first = owners.get((kind, other), "?")
            dist = infos[first].distribution if first in infos else "?"
            return (f"{what} {key!r} refused: it differs from {other!r} ({dist}, {first}) only "
                    "in case")
    return ""


def _duplicate_prompt(thing: Any, templates: list, domain: str) -> str:
    """Why a prompt template is refused (``""`` if it is not): its id (``name@version``) is
    already registered for the domain, so ``--template`` could not tell the two apart."""
    for t in templates:
        if t.id == thing.id:
            return (f"prompt template {thing.id!r} for domain {domain!r} refused: that id is "
                    "already registered, and the first one keeps it")
    return ""


def _table_for(reg: Registry, kind: str, thing: Any) -> tuple[str, dict]:
    if kind == "datasets":
        _expect(thing, DatasetLoader)
        return thing.name, reg.datasets
    if kind == "verifiers":
        _check_verifier(thing)
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


def _check_verifier(thing: Any) -> None:
    """The Verifier protocol, checked at load time: a verifier that cannot take ``strict`` would
    silently turn off curate's strict check on training targets."""
    import inspect

    if not isinstance(thing, Verifier):
        raise TypeError(f"a verifier needs .domain, .extract() and .verify(), got {thing!r}")
    for method, needed in (("verify", ("strict", "timeout")), ("extract", ("strict",))):
        params = inspect.signature(getattr(thing, method)).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        missing = [n for n in needed if n not in params and not takes_any]
        if missing:
            raise TypeError(f"verifier {thing.domain!r}: {method}() must accept "
                            f"{', '.join(m + '=' for m in missing)} (ssb.types.Verifier)")


def _expect(thing: Any, cls: type) -> None:
    if not isinstance(thing, cls):
        raise TypeError(f"expected ssb.types.{cls.__name__}, got {type(thing).__name__}")
