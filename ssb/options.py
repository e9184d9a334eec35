"""Stage configs: one dataclass per stage is the single source of every option.

A field declared with :func:`option` carries, as metadata, everything the rest of ssb needs to
know about it: its help text, its command-line flag, its bounds or choices, whether it belongs
to the run's *resume identity* (a changed value refuses a resume) and whether it is *secret*
(never written to a file or a log).  The typer options of ``ssb <stage>``, the ``--config``
TOML keys, presets and manifests are all derived from the dataclass, so adding an option to a
stage is one field.

Resolution order, for every stage: dataclass default < preset < ``--config`` TOML < explicit
flags (:func:`resolve`).  A table-valued option (``[distill]`` of a run, ``-B``) is merged key by
key across those layers, so ``--distill max_steps=1`` changes one key of the file's ``[distill]``.
A file's tables are checked: a table that is neither this command's section, another command's,
nor a table-valued option is refused with a suggestion, and so is a key given twice in one table
under two spellings (``max-tokens`` and ``max_tokens``).  Validation runs before anything is written (:meth:`StageConfig.validate`),
so a bad value fails with one line naming the field and its flag, and leaves no manifest behind.

Nothing here imports click, typer or rich: the CLI (``ssb.commands``) reads the same metadata.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
import warnings
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from ssb.errors import SsbError


class ConfigError(SsbError):
    """A bad option value, config file key or preset (exit code 2, one line)."""


class SsbDeprecationWarning(DeprecationWarning):
    """An old option name or meaning that still works (the CLI prints it as one ``warning:``
    line; Python callers see a :class:`DeprecationWarning`)."""


# Options that steer how a stage treats what OUT already holds, never what it computes: left out
# when ``ssb run``/``ssb study`` compare a completed stage's recorded config with the current one.
CONTROL_OPTIONS = ("restart", "accept_changed_config", "force")

# The sections a shared TOML file may hold besides this command's own: every core command's
# (``ssb eval compare`` reads ``[compare]``).  Any other table is refused as a misspelling.
COMMAND_SECTIONS = ("curate", "distill", "eval", "evaluate", "teacher-logits", "run", "study",
                    "generate", "verify", "compare", "export", "problems")


def option(default: Any = MISSING, *, help: str, flag: str | None = None,
           short: str | None = None, resume: bool = True, secret: bool = False,
           choices: tuple[Any, ...] | None = None, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None,
           default_factory: Callable[[], Any] | Any = MISSING, cli: bool = True,
           metavar: str | None = None,
           deprecated: tuple[str, str] | None = None) -> Any:
    """A config field and its contract.

    ``resume=False`` marks options that may change between a run and its resume without
    changing what is computed (threads, batch sizes of I/O, progress...).  ``ge``/``gt``/``le``/
    ``lt`` and ``choices`` are checked by :meth:`StageConfig.validate` (``None`` values are
    skipped: optional options).  ``cli=False`` keeps a field out of the command line (set from
    config files and the Python API only).  ``deprecated=(field, meaning)``: an old boolean
    name that still works; set, it warns once (:class:`SsbDeprecationWarning`) and sets ``field``
    instead (``meaning`` says what that is, for the warning).
    """
    meta = {"help": help, "flag": flag, "short": short, "resume": resume, "secret": secret,
            "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "cli": cli,
            "metavar": metavar, "deprecated": deprecated}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """What the CLI and the config machinery know about one field (read from its metadata)."""

    name: str
    type: Any  # the resolved annotation
    default: Any  # MISSING when required
    help: str
    flag: str
    short: str | None
    resume: bool
    secret: bool
    choices: tuple[Any, ...] | None
    bounds: dict[str, float]
    cli: bool
    metavar: str | None
    deprecated: tuple[str, str] | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def base_type(self) -> Any:
        """``int`` for ``int | None``; ``list`` for ``list[str]``; ``dict`` for ``dict[...]``."""
        return _strip_optional(self.type)

    @property
    def optional(self) -> bool:
        return _is_optional(self.type)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(tp)


def _strip_optional(tp: Any) -> Any:
    if _is_optional(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else Any
    origin = typing.get_origin(tp)
    return origin or tp


class StageConfig:
    """Mixin for the stage config dataclasses (:class:`ssb.curate.CurateConfig`, ...).

    Subclasses are dataclasses whose fields are declared with :func:`option`; they may define
    ``PRESETS`` (name -> field values) and override :meth:`check` for rules that involve
    several fields.
    """

    COMMAND: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    # -- the schema -------------------------------------------------------------------------
    @classmethod
    def specs(cls) -> list[OptionSpec]:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            meta = f.metadata
            if "help" not in meta:
                raise TypeError(f"{cls.__name__}.{f.name} must be declared with ssb.options.option")
            default = f.default
            if default is MISSING and f.default_factory is not MISSING:
                default = f.default_factory()
            out.append(OptionSpec(
                name=f.name, type=hints[f.name], default=default, help=meta["help"],
                flag=meta["flag"] or "--" + f.name.replace("_", "-"), short=meta["short"],
                resume=meta["resume"], secret=meta["secret"], choices=meta["choices"],
                bounds={k: meta[k] for k in ("ge", "gt", "le", "lt") if meta[k] is not None},
                cli=meta["cli"], metavar=meta["metavar"],
                deprecated=meta.get("deprecated")))
        return out

    def __post_init__(self) -> None:
        """An old option given (``force=True``): warn once and set what it means for this
        command instead; the old field goes back to its default, so nothing warns twice."""
        for s in self.specs():
            if s.deprecated is None or not getattr(self, s.name, False):
                continue
            target, meaning = s.deprecated
            new = self.spec(target)
            warnings.warn(f"{s.flag} is deprecated; for `ssb {self.COMMAND}` it means "
                          f"{new.flag} ({meaning}): use {new.flag}",
                          SsbDeprecationWarning, stacklevel=3)
            object.__setattr__(self, target, True)
            object.__setattr__(self, s.name, s.default)

    @classmethod
    def spec(cls, name: str) -> OptionSpec:
        for s in cls.specs():
            if s.name == name:
                return s
        raise KeyError(name)

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "config"):
        """A validated config from plain data (TOML/JSON keys may use ``-`` or ``_``)."""
        return cls(**_coerce_all(cls, _normalize_keys(cls, data, where), where)).validate()

    def replace(self, **changes: Any):
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes).validate()  # type: ignore[type-var]

    def validate(self):
        """Check every field against its declared type, bounds and choices, then :meth:`check`.

        Returns ``self`` so calls chain.  Raises :class:`ConfigError` naming the flag.
        """
        for s in self.specs():
            value = getattr(self, s.name)
            checked = _check_value(s, value)
            if checked is not value:
                object.__setattr__(self, s.name, checked)
        self.check()
        return self

    def check(self) -> None:
        """Rules across fields (override in subclasses); raise :class:`ConfigError`."""

    # -- what gets recorded -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able data, secrets included (for passing a config to a child
        process; never write this to a file a user keeps)."""
        return {s.name: _jsonable(getattr(self, s.name)) for s in self.specs()}

    def manifest(self) -> dict[str, Any]:
        """Every non-secret field as JSON-able data: what ``manifest.json`` records."""
        return {s.name: _jsonable(self._public_value(s)) for s in self.specs() if not s.secret}

    def identity(self) -> dict[str, Any]:
        """The fields that decide what is computed: compared on resume."""
        return {s.name: _jsonable(self._public_value(s, identity=True))
                for s in self.specs() if s.resume and not s.secret}

    def _public_value(self, s: OptionSpec, identity: bool = False) -> Any:
        return getattr(self, s.name)


def flag_of(cls: type[StageConfig], name: str) -> str:
    return cls.spec(name).flag


def _normalize_keys(cls: type[StageConfig], data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Keys as field names (``max-tokens``, ``max_tokens`` and a flag's own spelling such as
    ``filter`` all name one field); an unknown key or one field given twice is refused."""
    names = {s.name: s for s in cls.specs()}
    aliases = {s.flag.lstrip("-").replace("-", "_"): s.name for s in names.values()}
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = aliases.get(name, name)
        if name not in names:
            known = sorted(s.flag.lstrip("-") for s in names.values())
            raise ConfigError(f"{where}: unknown key {key!r} for `ssb {cls.COMMAND}`"
                              f"{_suggest(str(key).replace('_', '-'), known)} "
                              f"(known: {', '.join(known)})")
        if name in out:
            raise ConfigError(f"{where}: {spelled[name]!r} and {key!r} both set "
                              f"{names[name].flag}; give it once")
        out[name] = value
        spelled[name] = str(key)
    return out


def _suggest(name: str, known: Any) -> str:
    """``"; did you mean 'eval'?"`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _table_keys(cls: Any, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A table-valued option's keys in one spelling, for a key-by-key merge: a stage's field
    names when the table is a stage's options (``cls``), else ``-`` as ``_``.  Unknown keys
    are kept (the stage's own check names them); one key given twice is refused."""
    aliases: dict[str, str] = {}
    if cls is not None:
        for s in cls.specs():
            aliases[s.name] = s.name
            aliases[s.flag.lstrip("-").replace("-", "_")] = s.name
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = aliases.get(name, name)
        if name in out:
            raise ConfigError(f"{where}: {spelled[name]!r} and {key!r} are one option; "
                              "give it once")
        out[name] = value
        spelled[name] = str(key)
    return out


def _coerce_all(cls: type[StageConfig], data: dict[str, Any], where: str) -> dict[str, Any]:
    specs = {s.name: s for s in cls.specs()}
    return {k: _coerce(specs[k], v, where) for k, v in data.items()}


def _coerce(s: OptionSpec, value: Any, where: str = "") -> Any:
    """Loose input (TOML, JSON, CLI) -> the field's type; a mismatch names the flag."""
    if value is None:
        return None
    tp = s.base_type
    prefix = f"{where}: " if where else ""
    try:
        if tp is Path:
            if isinstance(value, str) and not value.strip():  # Path("") is the working dir
                raise ConfigError(f"{prefix}{s.flag} is empty; name a path")
            if isinstance(value, (str, Path)):
                return Path(value)
        elif tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
        elif tp is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):  # KEY=VALUE text, typed by the field
                return int(value.strip())
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value.strip())
        elif tp is str:
            if isinstance(value, (str, Path)):
                return str(value)
        elif tp is list:
            if isinstance(value, (list, tuple)):
                return list(value)
            if isinstance(value, str):
                return [value]
        elif tp is dict:
            if isinstance(value, Mapping):
                return scalar_table(s, value, prefix)
            if isinstance(value, (list, tuple)):  # repeatable KEY=VALUE flags (-B n_threads=2)
                return key_values(value, s.flag)
        else:
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{prefix}{s.flag} expects {_type_name(s)}, got {value!r}")


def scalar_table(s: OptionSpec, table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A table given to a KEY=VALUE option (``backend-opt = {...}``, ``filter = {...}``) as a
    dict, each value a scalar: a list or a table where one value belongs (``device = ["cpu"]``)
    is refused here, naming the key, instead of reaching a library as the text ``"['cpu']"``.
    Other table-valued options (``ssb run``'s ``[curate]``) are checked by their stage."""
    if s.metavar == "KEY=VALUE":
        for key, value in table.items():
            if isinstance(value, (list, tuple, Mapping)):
                shape = "a table" if isinstance(value, Mapping) else "a list"
                raise ConfigError(f"{prefix}{s.flag} {key} takes one value (text, a number or "
                                  f"true/false), got {shape}")  # not shown: may be a secret
    return dict(table)


def key_values(items: Any, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (values stay text: a schema types them)."""
    from ssb.secrets import redact_text

    out: dict[str, str] = {}
    for item in items:
        key, eq, value = str(item).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {redact_text(str(item))!r}")
        out[key.strip()] = value.strip()
    return out


def _type_name(s: OptionSpec) -> str:
    tp = s.base_type
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            Path: "a path", list: "a list", dict: "a table"}.get(tp, str(tp))


def _number(x: float) -> str:
    """A bound or a value as a reader writes it: an integer with thousands separators
    (``1,000,000``, not ``1e+06``), a float as given (``-1.0``, ``0.05``)."""
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else str(x)


def _check_value(s: OptionSpec, value: Any) -> Any:
    if value is None:
        if s.optional or s.default is None:
            return None
        raise ConfigError(f"{s.flag} is required")
    value = _coerce(s, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{s.flag} must be a finite number, got {value}")
    if s.choices is not None and value not in s.choices:
        raise ConfigError(f"{s.flag} must be one of {', '.join(map(str, s.choices))}, "
                          f"got {value!r}")
    b = {k: _number(v) for k, v in s.bounds.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "ge" in b and value < s.bounds["ge"]:
            raise ConfigError(f"{s.flag} must be >= {b['ge']}, got {_number(value)}")
        if "gt" in b and value <= s.bounds["gt"]:
            raise ConfigError(f"{s.flag} must be > {b['gt']}, got {_number(value)}")
        if "le" in b and value > s.bounds["le"]:
            raise ConfigError(f"{s.flag} must be <= {b['le']}, got {_number(value)}")
        if "lt" in b and value >= s.bounds["lt"]:
            raise ConfigError(f"{s.flag} must be < {b['lt']}, got {_number(value)}")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


# -- TOML files and resolution -------------------------------------------------------------------

def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML config through ssb's bounded reader: a regular file only (a FIFO would block
    forever), up to ``MAX_DOCUMENT_BYTES``, nesting that TOML's parser cannot recurse through
    refused in one line."""
    from ssb.journal import read_document

    try:
        data = read_document(path, "config file")
    except SsbError as exc:  # missing, a directory, a FIFO, a /proc file, too big
        raise ConfigError(str(exc)) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason})") from None


def file_section(data: dict[str, Any], section: str | None,
                 nested: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys a TOML file gives one command: its top-level scalars, then the table named
    after the command (``[distill]``) on top.  Tables named in ``nested`` are kept as values."""
    keep = {n.replace("-", "_") for n in nested}
    merged = {k: v for k, v in data.items()
              if not isinstance(v, dict) or k.replace("-", "_") in keep}
    if section and isinstance(data.get(section), dict):
        merged.update(data[section])
    return merged


def check_tables(data: Mapping[str, Any], where: str, command: str,
                 tables: set[str]) -> None:
    """Refuse a table that no command reads (``[evl]``, ``[curat]``): it would be ignored.

    ``tables``: this command's table-valued options and nested stage tables (``-`` or ``_``)."""
    allowed = {*COMMAND_SECTIONS, command, *tables}
    allowed |= {t.replace("_", "-") for t in allowed} | {t.replace("-", "_") for t in allowed}
    for key, value in data.items():
        if isinstance(value, dict) and key not in allowed:
            shown = sorted(t for t in allowed if "_" not in t)
            raise ConfigError(f"{where}: unknown table [{key}]{_suggest(key, shown)} "
                              f"(tables: {', '.join(shown)})")


def resolve(cls: type[StageConfig], *, preset: str | None = None,
            file: str | Path | None = None, flags: Mapping[str, Any] | None = None,
            section: str | None = None, nested: tuple[str, ...] = ()):
    """defaults < preset < TOML file < flags (only the flags the user gave) -> validated config.

    The TOML file may itself name a ``preset``; a preset on the command line wins over it.
    Table-valued options merge key by key across the layers (a flag changes one key of the
    file's table, not the whole table).  In the file, the command's section (``[distill]``)
    wins over the top-level keys.
    """
    specs = {s.name: s for s in cls.specs()}
    tables = {s.name for s in specs.values() if s.base_type is dict}
    names = tables | {s.flag.lstrip("-") for s in specs.values() if s.base_type is dict}
    layers: list[tuple[dict[str, Any], str]] = []
    if file is not None:
        where = str(file)
        data = read_toml(file)
        from ssb.secrets import learn

        learn(data)  # a URL's credentials in the file are masked in every line from now on
        command = section or cls.COMMAND
        check_tables(data, where, command, names | set(nested))
        keep = {n.replace("-", "_") for n in (*nested, *names)}
        top = {k: v for k, v in data.items()
               if not isinstance(v, dict) or k.replace("-", "_") in keep}
        own = dict(data[command]) if isinstance(data.get(command), dict) else {}
        top_preset, own_preset = top.pop("preset", None), own.pop("preset", None)
        preset = preset or (own_preset if own_preset is not None else top_preset)
        layers += [(_normalize_keys(cls, top, where), where),
                   (_normalize_keys(cls, own, f"{where} [{command}]"), f"{where} [{command}]")]
    layers.append((_normalize_keys(cls, dict(flags or {}), "command line"), "command line"))
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in cls.PRESETS:
            known = ", ".join(sorted(cls.PRESETS)) or "none"
            raise ConfigError(f"unknown preset {preset!r} for `ssb {cls.COMMAND}`"
                              f"{_suggest(preset, cls.PRESETS)}; known: {known}")
        layers.insert(0, (dict(cls.PRESETS[preset]), f"preset {preset}"))
    table_class = getattr(cls, "table_class", None)
    for layer, where in layers:
        for name, value in _coerce_all(cls, layer, where).items():
            if name in tables and isinstance(value, dict):
                sub = table_class(name) if table_class is not None else None
                label = f"{where} [{name}]" if where != "command line" else specs[name].flag
                merged = dict(values.get(name) or {})
                merged.update(_table_keys(sub, value, label))
                values[name] = merged
            else:
                values[name] = value
    missing = [s.flag for s in specs.values() if s.required and s.name not in values]
    if missing:
        raise ConfigError(f"`ssb {cls.COMMAND}` needs {', '.join(missing)}")
    return cls(**values).validate()


__all__ = ["CONTROL_OPTIONS", "ConfigError", "OptionSpec", "SsbDeprecationWarning", "StageConfig",
           "check_tables", "file_section", "flag_of", "option", "read_toml", "resolve"]
