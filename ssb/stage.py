"""The skeleton every journaled stage shares: output lock, resume identity, manifest, journal,
and the problems it works on.

:class:`StageOutput` is entered once per run of a stage on its output directory::

    with StageOutput(out, "curate", identity, manifest_config, force=cfg.force) as stage:
        journal = stage.journal()      # append-only, fsync'd, survives SIGKILL
        ...
        stage.finish(stats=...)        # manifest.json gets its end time and summary

* a directory that holds another command's run (``ssb eval`` output given to ``ssb curate``) is
  refused before anything is written in it;
* the directory is locked (``flock``, one lock per directory whatever the command) so two
  processes never write it (released on SIGKILL);
* a directory that holds a run of the same command whose *identity* (the config fields that
  decide what is computed) differs is refused, unless ``force`` (``--accept-changed-config``);
  ``restart`` (``--restart``) first deletes the stage's named outputs and manifest;
* ``manifest.json`` records ssb, plugin and library versions, the full public config, the input
  hashes and times; secrets never reach it (:mod:`ssb.secrets`).

Configs are validated *before* a stage enters its :class:`StageOutput`, so a rejected command
leaves nothing behind that would refuse the corrected one.
"""

from __future__ import annotations

import hashlib
import itertools
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
from ssb.journal import LOCK_NAME, Journal, OutputLock, atomic_write_json, set_output_mode
from ssb.records import Problem, RunManifest
from ssb.secrets import learn, redact

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
    check_command(out_dir, command, old)
    changes = identity_changes(previous_identity(old), redact(identity))
    if changes and not force:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        raise SsbError(
            f"{out_dir} was started with a different config; refusing to resume.\n{lines}\n"
            "Use a new --out, --restart to start over, or --accept-changed-config to go on "
            "under the new config."
        )
    return True


def check_command(out_dir: Path, command: str, manifest: dict[str, Any] | None) -> None:
    """Refuse a directory that holds another command's run (read-only: nothing is written)."""
    if manifest is not None and manifest.get("command") != command:
        raise SsbError(f"{out_dir} holds a `{manifest.get('command')}` run, not `{command}`; "
                       "use another --out")


def check_output_dir(out: Path, flag: str = "--out") -> None:
    """Refuse an output path that cannot become a directory, in one line and before anything is
    written: a file (or FIFO, device) where the directory should be, a path under a file, a
    symlink loop or a dangling symlink.  A new path under directories is fine."""
    import errno
    import stat

    try:
        mode = os.stat(out).st_mode  # follows symlinks: a link to a directory is a directory
    except FileNotFoundError:
        if os.path.islink(out):
            raise SsbError(f"{flag} {out} is a symlink to nothing ({os.readlink(out)}); "
                           "name a directory") from None
        parent = out.parent
        while not os.path.lexists(parent) and parent != parent.parent:
            parent = parent.parent
        if parent != out:
            check_output_dir(parent, flag)  # the nearest existing parent must be a directory
        return
    except OSError as exc:
        why = ("a symlink loop" if exc.errno == errno.ELOOP else
               "under a file, not a directory" if exc.errno == errno.ENOTDIR else
               exc.strerror or type(exc).__name__)
        raise SsbError(f"{flag} {out}: {why}; name a directory") from None
    if not stat.S_ISDIR(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if (
            stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) else "a file"
        raise SsbError(f"{flag} {out} is {kind}, not a directory; name a directory")


class StageOutput:
    """Lock, resume check and manifest of one stage run in ``out`` (see the module docstring)."""

    def __init__(self, out: str | Path, command: str, identity: dict[str, Any],
                 config: dict[str, Any], *, force: bool = False,
                 inputs: Sequence[Path] = (), seed: int | None = None,
                 input_hashes: dict[str, str] | None = None,
                 restart: bool = False, outputs: Sequence[str] = ()):
        self.out = Path(out)
        self.command = command
        self.identity = identity
        self.config = config
        self.force = force  # go on although the identity changed (--accept-changed-config)
        self.restart = restart  # start from nothing: ``outputs`` and the manifest are deleted
        self.outputs = list(outputs)
        self.inputs = list(inputs)
        self.seed = seed
        self.input_hashes = dict(input_hashes or {})
        self.resumed = False
        self.work_started = False
        self.previous: dict[str, Any] | None = None
        self._lock = OutputLock(self.out / LOCK_NAME, f"ssb {command}")
        self._manifest: dict[str, Any] = {}
        learn([identity, config])  # a URL's credentials are masked in every file and line

    def __enter__(self) -> "StageOutput":
        # Another command's directory is refused before anything (even the lock) is written.
        check_output_dir(self.out)
        check_command(self.out, self.command, load_manifest(self.out))
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock.__enter__()
        try:
            if self.restart:  # under the lock, and only in a directory of this command's
                clear_outputs(self.out, [*self.outputs, MANIFEST])
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


def clear_outputs(out: Path, names: Sequence[str]) -> None:
    """Delete the named files and directories of ``out`` (``--restart``); nothing else in it,
    and nothing a name reaches through a symlink (the link itself goes)."""
    import shutil

    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


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
    learn(source)  # a URL's credentials, before a library's error can print them mangled
    loader = registry.dataset(dataset)
    loaded = loader.load(source, split, skip_bad=skip_bad, filters=filters)
    # Only the first ``limit`` are taken from the loader: a generated set may make its problems
    # on demand (``--filter n=1000000000 --limit 4`` builds four).
    selected = list(itertools.islice(loaded.problems, limit) if limit is not None
                    else loaded.problems)
    where = f"dataset {dataset!r} ({source or loader.default_source}, split {split})"
    seen: set[str] = set()
    for p in selected:
        if p.id in seen:
            raise SsbError(f"{where} has two problems with id {p.id!r}")
        seen.add(p.id)
    if not selected:
        raise SsbError(f"{where} has no problems")
    return SelectedProblems(dataset=dataset, split=split,
                            source=source or loader.default_source, domain=loader.domain,
                            selected=selected, skipped_rows=len(loaded.skipped),
                            inputs=local_inputs(source))


def make_readable(path: Path) -> None:
    """Give a file the permissions of every ssb output (:func:`ssb.journal.output_mode`);
    :func:`ssb.journal.atomic_write_text` already does, so this is only for other writers."""
    set_output_mode(path)


__all__ = ["MANIFEST", "SelectedProblems", "StageOutput", "check_command", "check_resume",
           "clear_outputs",
           "environment_versions", "load_manifest", "local_inputs", "make_readable", "now",
           "problems_sha256", "select_problems", "sha256_file", "write_manifest"]
