"""Options that several commands share, each declared once: one flag, one short name, one help.

A stage config takes a shared option by calling its declaration here with the default that
stage needs (``model: str = MODEL()`` where it is required, ``MODEL("default")`` where it is not),
and a ``note`` where the option plays a particular role in that stage (the teacher's model, the
seed of the LoRA init).  :class:`PipelineOptions` is the group that ``ssb run`` and ``ssb study``
both are (TRL-style composition: each inherits it, then adds its own fields).

Every flag name, TOML key and Python keyword stays what it was: these are the same fields, with
the same names, defaults and resume identity, declared in one place.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from ssb.options import option


def _help(text: str, note: str | None) -> str:
    return f"{text[:-1]} ({note})." if note else text


# -- what a stage runs on ------------------------------------------------------------------------

def MODEL(default: Any = MISSING, *, note: str | None = None) -> Any:
    return option(default, short="-m", help=_help(
        "Model: hub id, HF directory, .gguf file or 'default'.", note))


def BACKEND(default: Any = MISSING, *, note: str | None = None) -> Any:
    return option(default, short="-b", help=_help(
        "Generation backend; `ssb plugins` lists them.", note))


def BACKEND_OPTIONS(*, note: str | None = None) -> Any:
    return option(default_factory=dict, flag="--backend-opt", short="-B", metavar="KEY=VALUE",
                  help=_help("Backend option KEY=VALUE (repeatable; `ssb plugins` lists each "
                             "backend's).", note))


def ADAPTER(*, note: str | None = None) -> Any:
    return option(None, help=_help("LoRA adapter for the backend: a peft directory (exported to "
                                   "GGUF automatically for backends that load only GGUF "
                                   "adapters) or a GGUF LoRA file.", note))


def SEED(default: int = 0, *, note: str | None = None) -> Any:
    return option(default, help=_help("Seed.", note))


def OUT(*, note: str) -> Any:
    """The output directory: not in the resume identity (a run may move)."""
    return option(short="-o", resume=False, metavar="PATH",
                  help=f"Output directory: {note} (rerun the same command to resume).")


# -- the problems --------------------------------------------------------------------------------

def DOMAIN(default: Any = MISSING, *, note: str | None = None) -> Any:
    return option(default, help=_help("Domain: verifier + prompts (gsm8k, math, ...; `ssb "
                                      "plugins` lists the installed ones).", note))


def DATASET(default: Any = MISSING, *, note: str | None = None) -> Any:
    return option(default, short="-d", help=_help("Dataset name.", note))


def SOURCE(*, note: str | None = None) -> Any:
    return option(None, help=_help("Local jsonl/json/parquet file or folder, or a hub id "
                                   "(default: the dataset's own).", note))


def SPLIT(default: str, *, note: str | None = None) -> Any:
    return option(default, help=_help("Dataset split.", note))


def LIMIT(*, note: str | None = None) -> Any:
    return option(None, ge=1, help=_help("Use only the first N problems.", note))


def FILTERS() -> Any:
    return option(default_factory=dict, flag="--filter", metavar="KEY=VALUE",
                  help="Dataset filter KEY=VALUE (repeatable), e.g. n=300 for a generated set, "
                  "subject=Algebra.")


def TEMPLATE(*, note: str | None = None) -> Any:
    return option(None, help=_help("Prompt template name or name@version (default: the "
                                   "domain's first).", note))


def WORKERS() -> Any:
    return option(None, ge=0, short="-w", resume=False, help="Verification helper processes "
                  "(default: one per core; 0: in-process).")


# -- what to do with what OUT already holds (the same two flags in every stage) ------------------

def RESTART(*, note: str | None = None) -> Any:
    return option(False, resume=False, help=_help(
        "Start from nothing: delete what an earlier run of this command left in OUT (its "
        "journal, outputs and checkpoints; nothing else) before running.", note))


def ACCEPT_CHANGED_CONFIG(*, note: str | None = None) -> Any:
    return option(False, resume=False, help=_help(
        "Go on in OUT although it was started with another config.", note))


def FORCE(means: str, meaning: str) -> Any:
    """The old ``--force``: it meant ``means`` for this command (deprecated, still works)."""
    return option(False, resume=False, deprecated=(means, meaning),
                  help=f"Deprecated: use --{means.replace('_', '-')} ({meaning}).")


# -- ssb run and ssb study ----------------------------------------------------------------------

def _eval_specs(default_note: str) -> Any:
    return option(default_factory=list, metavar="NAME[=SOURCE][?K=V&...]",
                  help="Eval dataset NAME, NAME=SOURCE, with optional dataset filters after '?' "
                  "(e.g. arithmetic?n=300) and that set's split, limit or max_tokens "
                  f"(repeatable; default: {default_note}).")


def _stage_table(command: str, table: str, note: str = "") -> Any:
    # OPTION=VALUE, not KEY=VALUE: a stage's table may hold tables ([curate.filters]); the
    # stage checks its own values (ssb.options.scalar_table checks KEY=VALUE options only).
    return option(default_factory=dict, flag=f"--{table}", metavar="OPTION=VALUE",
                  help=f"An `ssb {command}` option{note}, KEY=VALUE (repeatable; merged key by "
                  f"key into the config file's [{table}] table).")


@dataclass
class PipelineOptions:
    """The fields ``ssb run`` and ``ssb study`` share (each class inherits them; the order of
    the fields is the order of the flags in ``--help``)."""

    out: Path = OUT(note="the pipeline's tree, one directory per stage")
    domain: str | None = DOMAIN(None, note="default: the installed domain when there is one")
    dataset: str | None = DATASET(None, note="the training set; default: the domain's")
    source: str | None = SOURCE(note="of the training set")
    split: str = SPLIT("train", note="of the training set")
    limit: int | None = option(None, ge=1, help="Problems to curate.")
    backend: str = BACKEND("llama.cpp", note="for curate and eval")
    model: str = MODEL("default", note="the base model")
    distill_model: str | None = option(None, help="Model for distill (default: --model).")
    backend_options: dict[str, Any] = BACKEND_OPTIONS(note="for curate and eval")
    seed: int = SEED(0, note="every stage")
    eval: list[str] = _eval_specs("the training dataset")
    eval_split: str = option("test", help="Eval split.")
    eval_limit: int | None = option(None, ge=1, help="Problems per eval dataset.")
    launcher: str | None = option(None, resume=False,
                                  help="Command that launches distillation, e.g. "
                                  "'accelerate launch --num_processes 8' (default: python); "
                                  "checked before the first stage.")
    curate: dict[str, Any] = _stage_table("curate", "curate")
    distill: dict[str, Any] = _stage_table("distill", "distill")
    evaluate: dict[str, Any] = _stage_table("eval", "evaluate")
    report_to: str = option("none", resume=False,
                            help="Experiment trackers for distill (see `ssb distill --help`).")
    restart: bool = RESTART(note="every stage reruns from nothing")
    accept_changed_config: bool = ACCEPT_CHANGED_CONFIG(
        note="each stage whose config changed goes on where that is safe: curate and eval keep "
        "the records already made and add the rest under the new config; distill and "
        "teacher-logits, which cannot resume another config's checkpoints, start over")
    force: bool = FORCE("restart", "rerun every stage from nothing")


__all__ = ["ACCEPT_CHANGED_CONFIG", "ADAPTER", "BACKEND", "BACKEND_OPTIONS", "DATASET", "DOMAIN",
           "FILTERS", "FORCE", "LIMIT", "MODEL", "OUT", "PipelineOptions", "RESTART", "SEED",
           "SOURCE", "SPLIT", "TEMPLATE", "WORKERS"]
