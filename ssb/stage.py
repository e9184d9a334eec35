"""The skeleton every journaled stage shares: output lock, resume identity, manifest, journal,
and the problems it works on.

:class:`StageOutput` is entered once per run of a stage on its output directory::

    with StageOutput(out, "curate", identity, manifest_config, force=cfg.force) as stage:
        journal = stage.journal()      # append-only, fsync'd, survives SIGKILL
        ...
        stage.finish(stats=...)        # manifest.json gets its end time and summary

* the directory is locked (``flock``) so two processes never write it (released on SIGKILL);
* a directory that holds a run of the same command whose *identity* (the config fields that
  decide what is computed) differs is refused, unless ``force``;
* ``manifest.json`` records ssb, plugin and library versions, the full public config, the input
  hashes and times; secrets never reach it (:mod:`ssb.secrets`).

Configs are validated *before* a stage enters its :class:`StageOutput`, so a rejected command
leaves nothing behind that would refuse the corrected one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

from ssb.errors import DiskFull, SsbError, disk_full_cause
from ssb.journal import Journal, OutputLock, atomic_write_json
from ssb.records import Problem, RunManifest
from ssb.secrets import redact

MANIFEST = "manifest.json"


# -- manifests -----------------------------------------------------------------------------------

def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def environment_versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries that decide numerics (without importing)."""
    out = {"python": platform.python_version(), "platform": sys.platform}
    for dist in ("torch", "transformers", "peft", "accelerate", "datasets", "math-verify",
                 "llama_cpp_python", "vllm"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SsbError(f"{path}: unreadable manifest ({exc}); move it away to start over") from None


def write_manifest(out_dir: str | Path, data: dict[str, Any]) -> None:
    atomic_write_json(Path(out_dir) / MANIFEST, redact(data))
    make_readable(Path(out_dir) / MANIFEST)  # mkstemp made it 0600; secrets never reach it


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs; an option added since the old run (absent there) counts as
    unchanged while it holds an empty value."""
    def value(d: dict[str, Any], k: str) -> Any:
        v = d.get(k)
        return None if v in ({}, [], None) else v

    keys = set(old) | set(new)
    return {k: (old.get(k), new.get(k)) for k in sorted(keys) if value(old, k) != value(new, k)}


def previous_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest.get("identity") or manifest.get("config") or {}


def check_resume(out_dir: Path, command: str, identity: dict[str, Any], force: bool) -> bool:
    """True when ``out_dir`` holds an earlier run of the same command and identity (resume).

    A changed identity is refused with the differences listed, unless ``force``.
    """
    old = load_manifest(out_dir)
    if old is None:
        return False
    if old.get("command") != command:
        raise SsbError(f"{out_dir} holds a `{old.get('command')}` run, not `{command}`")
    changes = identity_changes(previous_identity(old), redact(identity))
    if changes and not force:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        raise SsbError(
            f"{out_dir} was started with a different config; refusing to resume.\n{lines}\n"
            "Use a new --out, or --force to continue with the new config."
        )
    return True


class StageOutput:
    """Lock, resume check and manifest of one stage run in ``out`` (see the module docstring)."""

    def __init__(self, out: str | Path, command: str, identity: dict[str, Any],
                 config: dict[str, Any], *, force: bool = False,
                 inputs: Sequence[Path] = (), seed: int | None = None,
                 input_hashes: dict[str, str] | None = None):
        self.out = Path(out)
        self.command = command
        self.identity = identity
        self.config = config
        self.force = force
        self.inputs = list(inputs)
        self.seed = seed
        self.input_hashes = dict(input_hashes or {})
        self.resumed = False
        self.work_started = False
        self.previous: dict[str, Any] | None = None
        self._lock = OutputLock(self.out / f".{command}.lock", f"ssb {command}")
        self._manifest: dict[str, Any] = {}

    def __enter__(self) -> "StageOutput":
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        try:
            self.previous = load_manifest(self.out)
            self.resumed = check_resume(self.out, self.command, self.identity, self.force)
            self._manifest = self._start()
            write_manifest(self.out, self._manifest)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None = None, *rest: Any) -> None:
        try:
            if exc_type is not None and self.previous is None and not self.work_started:
                # Failed before doing any work (a bad input found while loading): leave no
                # manifest that would refuse the corrected command as "a different config".
                (self.out / MANIFEST).unlink(missing_ok=True)
        finally:
            self._lock.__exit__(exc_type, exc, *rest)
        full = _disk_full(exc, self.out) if exc is not None else None
        if full is not None:
            # One line naming the path instead of a library traceback; the journal keeps
            # every finished unit (fsync'd), so the same command continues once there is room.
            raise full from exc

    def start_work(self) -> None:
        """Mark that outputs are being produced (a failure from now on keeps the manifest)."""
        self.work_started = True

    @property
    def identity_changed(self) -> bool:
        """The directory held a run with another identity (only possible with ``force``)."""
        return bool(self.previous and identity_changes(previous_identity(self.previous),
                                                       redact(self.identity)))

    def _start(self) -> dict[str, Any]:
        from ssb import __version__
        from ssb.plugins import get_registry

        manifest = RunManifest(
            command=self.command, ssb_version=__version__, plugins=get_registry().versions(),
            versions=environment_versions(), seed=self.seed, config=self.config,
            inputs={**{str(p): sha256_file(p) for p in self.inputs if Path(p).is_file()},
                    **self.input_hashes},
            started=now())
        return {**manifest.to_dict(), "identity": self.identity}

    def journal(self, name: str = "journal.jsonl") -> Journal:
        return Journal(self.out / name)

    def finish(self, **extra: Any) -> None:
        self._manifest["finished"] = now()
        self._manifest.update(extra)
        write_manifest(self.out, self._manifest)


def _disk_full(exc: BaseException, out: Path) -> "DiskFull | None":
    """``exc`` as a :class:`DiskFull` naming the path (or ``out``), when the disk filled up.

    Some writers lose the errno (torch.save: "PytorchStreamWriter failed writing file"), so an
    I/O-looking error while ``out``'s filesystem has under 1 MiB free counts too."""
    cause = disk_full_cause(exc)
    if isinstance(cause, DiskFull):
        return None if cause.kept_in else DiskFull(cause.path, kept_in=str(out))
    if cause is None:
        if not isinstance(exc, (OSError, RuntimeError)) or isinstance(exc, SsbError):
            return None
        try:
            st = os.statvfs(out)
        except OSError:
            return None
        if st.f_bavail * st.f_frsize >= 1 << 20:
            return None
    path = getattr(cause, "filename", None)
    return DiskFull(str(path) if path else str(out), kept_in=str(out))


# -- the problems a stage works on ---------------------------------------------------------------

def problems_sha256(problems: Sequence[Problem]) -> str:
    """A hash of the problems (ids, questions, golds), order included."""
    h = hashlib.sha256()
    for p in problems:
        # surrogatepass: a lone surrogate in a dataset row hashes instead of crashing
        h.update(json.dumps([p.id, p.question, p.gold], ensure_ascii=False)
                 .encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def local_inputs(source: str | None) -> list[Path]:
    """The local files a dataset ``source`` names (hashed into the manifest)."""
    if not source:
        return []
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in
                      {".jsonl", ".json", ".parquet"})
    return []


@dataclass
class SelectedProblems:
    """The problems of a dataset split a stage runs on, after ``--limit``."""

    dataset: str
    split: str
    source: str
    domain: str
    selected: list[Problem]
    skipped_rows: int = 0
    inputs: list[Path] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return problems_sha256(self.selected)


def select_problems(registry: Any, dataset: str, source: str | None, split: str,
                    limit: int | None, *, skip_bad: bool = False,
                    filters: dict[str, Any] | None = None) -> SelectedProblems:
    """Load a dataset split through the registry, refuse duplicate ids, apply ``limit``."""
    loader = registry.dataset(dataset)
    loaded = loader.load(source, split, skip_bad=skip_bad, filters=filters)
    problems = list(loaded.problems)
    where = f"dataset {dataset!r} ({source or loader.default_source}, split {split})"
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise SsbError(f"{where} has two problems with id {p.id!r}")
        seen.add(p.id)
    selected = problems[:limit] if limit is not None else problems
    if not selected:
        raise SsbError(f"{where} has no problems")
    return SelectedProblems(dataset=dataset, split=split,
                            source=source or loader.default_source, domain=loader.domain,
                            selected=selected, skipped_rows=len(loaded.skipped),
                            inputs=local_inputs(source))


def make_readable(path: Path) -> None:
    """Give an atomically written output file the usual permissions (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


__all__ = ["MANIFEST", "SelectedProblems", "StageOutput", "check_resume",
           "environment_versions", "load_manifest", "local_inputs", "make_readable", "now",
           "problems_sha256", "select_problems", "sha256_file", "write_manifest"]
