"""TOML config files whose keys mirror the command-line flags (flags win), and run manifests."""

from __future__ import annotations

import hashlib
import platform
import sys
import tomllib
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click

from ssb.errors import SsbError
from ssb.journal import atomic_write_json
from ssb.records import RunManifest

MANIFEST = "manifest.json"
# Keys that may change between a run and its resume without changing what is computed.
VOLATILE_KEYS = {"config", "force", "workers", "threads", "progress", "max_errors", "out",
                 "verbose", "resume"}


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SsbError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SsbError(f"{path}: invalid TOML: {exc}") from None


def config_defaults(command: click.Command, data: dict[str, Any], path: str,
                    section: str | None = None) -> dict[str, Any]:
    """Map TOML keys (``lora-r`` or ``lora_r``) onto the command's parameter names.

    Top-level scalar keys apply; a table named after the command (``[distill]``) applies on top.
    Unknown keys are an error naming the file and the key.
    """
    names = {p.name: p for p in command.params if p.name}
    merged: dict[str, Any] = {k: v for k, v in data.items() if not isinstance(v, dict)}
    if section and isinstance(data.get(section), dict):
        merged.update(data[section])
    out: dict[str, Any] = {}
    for key, value in merged.items():
        name = key.replace("-", "_")
        if name not in names:
            raise SsbError(
                f"{path}: unknown key {key!r} for `ssb {section or command.name}` "
                f"(flags: {', '.join(sorted(n.replace('_', '-') for n in names))})"
            )
        out[name] = value
    return out


def config_option_callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Eager ``--config`` callback: TOML values become the defaults, so explicit flags win."""
    if value:
        data = read_toml(value)
        defaults = config_defaults(ctx.command, data, str(value), section=ctx.info_name)
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment_versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries that decide numerics (without importing)."""
    out = {"python": platform.python_version(), "platform": sys.platform}
    for dist in ("torch", "transformers", "peft", "accelerate", "datasets", "math-verify",
                 "llama_cpp_python", "vllm"):
        v = _dist_version(dist)
        if v:
            out[dist] = v
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """Config values as JSON (paths as strings); secrets never included."""
    out = {}
    for k, v in config.items():
        if "api_key" in k or k in {"token", "password"}:
            continue
        if isinstance(v, Path):
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        if isinstance(v, list):  # e.g. --backend-opt api_key=... : keep the key name only
            v = [_redact_option(x) if isinstance(x, str) else x for x in v]
        out[k] = v
    return out


def _redact_option(item: str) -> str:
    key, eq, _ = item.partition("=")
    name = key.strip().lower()
    secret = "key" in name or name in {"token", "password"}
    return f"{key}=<redacted>" if eq and secret else item


def start_manifest(out_dir: Path, command: str, config: dict[str, Any],
                   inputs: list[Path] | None = None, seed: int | None = None) -> RunManifest:
    from ssb import __version__
    from ssb.plugins import get_registry

    manifest = RunManifest(
        command=command,
        ssb_version=__version__,
        plugins=get_registry().versions(),
        versions=environment_versions(),
        seed=seed,
        config=jsonable(config),
        inputs={str(p): sha256_file(p) for p in (inputs or []) if Path(p).is_file()},
        started=now(),
    )
    write_manifest(out_dir, manifest)
    return manifest


def write_manifest(out_dir: Path, manifest: RunManifest) -> None:
    atomic_write_json(Path(out_dir) / MANIFEST, manifest.to_dict())


def finish_manifest(out_dir: Path, manifest: RunManifest, **extra: Any) -> None:
    manifest.finished = now()
    data = manifest.to_dict()
    data.update(extra)
    atomic_write_json(Path(out_dir) / MANIFEST, data)


def load_manifest(out_dir: Path) -> dict[str, Any] | None:
    import json

    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SsbError(f"{path}: unreadable manifest ({exc}); move it away to start over") from None


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    keys = (set(old) | set(new)) - VOLATILE_KEYS
    return {k: (old.get(k), new.get(k)) for k in sorted(keys) if old.get(k) != new.get(k)}


def check_resume(out_dir: Path, command: str, config: dict[str, Any], force: bool) -> bool:
    """True when ``out_dir`` holds an earlier run of the same command and config (resume).

    A changed config is refused with the differences listed, unless ``force``.
    """
    old = load_manifest(out_dir)
    if old is None:
        return False
    if old.get("command") != command:
        raise SsbError(f"{out_dir} holds a `{old.get('command')}` run, not `{command}`")
    changes = config_changes(old.get("config", {}), jsonable(config))
    if changes and not force:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        raise SsbError(
            f"{out_dir} was started with a different config; refusing to resume.\n{lines}\n"
            "Use a new --out, or --force to continue with the new config."
        )
    return True
