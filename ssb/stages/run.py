"""The whole pipeline: curate -> distill -> eval (base and student) -> report, in rounds.

:class:`RunConfig` holds the pipeline-level settings plus one table of options per stage
(``[curate]``, ``[distill]``, ``[evaluate]`` in TOML), and :meth:`RunConfig.check` builds and
validates every stage's config before the first stage starts, so a bad setting fails at once.

Each stage runs in its own process (:mod:`ssb.stages.child`) fed its validated config, so its
memory is returned between stages (llama.cpp, then torch) and each stage keeps its own resume
logic; distillation may run under a launcher (``launcher = "accelerate launch
--num_processes 8"``).  A stage whose outputs are complete for an unchanged config is skipped
(``.ssb-run-stage.json``), so rerunning the same ``ssb run`` after a crash continues where it
stopped.

Round r > 1 curates and distills with the round r-1 student as the model: its LoRA is merged into
the weights (``merged/``, an HF directory).  Only backends that load HF directories can do that
(:attr:`ssb.types.BackendFactory.loads_hf_dirs`); rounds beyond the first are refused otherwise.
A round r > 1 that curates no problem ends the rounds: the round r-1 student is the result.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from ssb.errors import SsbError
from ssb.events import Event, EventCallback, Reporter
from ssb.journal import atomic_write_json
from ssb.options import ConfigError, StageConfig, option
from ssb.secrets import redact, redact_text

STAGE_DONE = ".ssb-run-stage.json"  # written after a stage succeeds: the config it ran with


class PipelineStages:
    """The curate and eval configs a pipeline (``run``, ``study``) builds from its own fields and
    its ``[curate]`` / ``[evaluate]`` tables; the table wins over the pipeline-level value."""

    def curate_config(self, model: str, out: Path):
        from ssb.stages.curate import CurateConfig

        values = {"domain": self.domain, "backend": self.backend, "model": model, "out": out,
                  "dataset": self.dataset, "source": self.source, "split": self.split,
                  "limit": self.limit, "seed": self.seed,
                  "backend_options": dict(self.backend_options), "force": self.force,
                  **self.curate}
        return stage_config(CurateConfig, values, "curate", self.COMMAND)

    def eval_config(self, spec: str, model: str, adapter: Path | None, out: Path,
                    template: str | None = None):
        """``template``: the student template instead of ``[evaluate]``'s (a study's prompt arm)."""
        from ssb.stages.evaluate import EvalConfig

        name, source, filters = parse_eval_spec(spec)
        per_spec = {k: filters.pop(k) for k in list(filters) if k in EVAL_SPEC_KEYS}
        backend = getattr(self, "eval_backend", None) or self.backend
        values = {"dataset": name, "split": self.eval_split, "backend": backend, "model": model,
                  "seed": self.seed, "out": out, "source": source, "filters": filters,
                  "adapter": str(adapter) if adapter is not None else None,
                  "limit": self.eval_limit, "force": self.force,
                  "backend_options": dict(self.backend_options) if backend == self.backend
                  else {}, **self.evaluate}
        if getattr(self, "eval_max_tokens", None) is not None:
            values.setdefault("max_tokens", self.eval_max_tokens)
        if template is not None:
            values["template"] = template
        for key, value in per_spec.items():
            try:
                values[key] = value if key == "split" else int(value)
            except ValueError:
                raise ConfigError(f"eval spec {spec!r}: {key} must be an integer, got "
                                  f"{value!r}") from None
        return stage_config(EvalConfig, values, "evaluate", self.COMMAND)


@dataclass
class RunConfig(PipelineStages, StageConfig):
    """``ssb run``: the pipeline settings and the options of each stage."""

    COMMAND: ClassVar[str] = "run"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # The README's main job: offline, CPU, ~20-30 min on 2 cores with the real small model.
        "demo": {
            "domain": "arithmetic", "dataset": "arithmetic", "split": "train", "limit": 16,
            "backend": "llama.cpp", "model": "default",
            "backend_options": {"n_threads": 2}, "seed": 0, "eval": ["arithmetic"],
            "eval_split": "test", "eval_limit": 30, "eval_max_tokens": 384,
            "curate": {"rollouts": 4, "max_tokens": 384, "teacher_max_tokens": 512,
                       "batch_size": 4},
            # What the study measured working (+16 points on 300 problems, docs/study.md): the
            # paper's recipe for 1 epoch (r=32, a=32, every projection: the defaults), except
            # batch 2, since the demo keeps ~5-10 records and batch 4 would leave 1-2 steps.
            "distill": {"epochs": 1, "batch_size": 2, "lr": 2e-4, "temperature": 2.0,
                        "loss": "kl=1,ce=0", "max_length": 1024, "logging_steps": 1},
        },
        # The paper's recipe on a GPU: Qwen2.5-3B-Instruct, 256 GSM8K problems, vLLM rollouts.
        "paper": {
            "domain": "gsm8k", "dataset": "gsm8k", "split": "train", "limit": 256,
            "backend": "vllm", "model": "Qwen/Qwen2.5-3B-Instruct", "seed": 0,
            "eval": ["gsm8k", "math500", "aime24", "amc23"], "eval_split": "test",
            "eval_max_tokens": 4096, "backend_options": {"max_model_len": 8192},
            "curate": {"rollouts": 4, "temperature": 0.8, "top_k": 50, "top_p": 1.0,
                       "teacher_temperature": 0.4},
            "distill": {"lora_r": 32, "lora_alpha": 32, "target_modules": "q,k,v,o,gate,up,down",
                        "lr": 2e-4, "batch_size": 4, "epochs": 3.0, "temperature": 2.0,
                        "loss": "kl=1,ce=0"},
        },
    }

    out: Path = option(resume=False, help="Output tree (curate/, distill/, eval/, report.md).")
    domain: str = option("arithmetic", help="Domain (verifier + prompts), e.g. gsm8k.")
    dataset: str | None = option(None, help="Training dataset (default: the domain's).")
    source: str | None = option(None, help="Local path or hub id of the training set.")
    split: str = option("train", help="Training split.")
    limit: int | None = option(None, ge=1, help="Problems to curate.")
    backend: str = option("llama.cpp", help="Generation backend for curate and eval.")
    model: str = option("default", help="Base model: hub id, HF dir, .gguf, or 'default'.")
    backend_options: dict[str, Any] = option(
        default_factory=dict, flag="--backend-opt", short="-B", metavar="KEY=VALUE",
        help="Backend option KEY=VALUE for curate and eval (repeatable).")
    seed: int = option(0, help="Seed for every stage.")
    rounds: int = option(1, ge=1, help="Iterative bootstrapping rounds.")
    eval: list[str] = option(default_factory=list, metavar="NAME[=SOURCE][?K=V&...]",
                             help="Eval dataset NAME, NAME=SOURCE, with optional dataset filters "
                             "after '?' (e.g. arithmetic?n=300) (repeatable; default: the "
                             "training dataset).")
    eval_split: str = option("test", help="Eval split.")
    eval_limit: int | None = option(None, ge=1, help="Problems per eval dataset.")
    eval_max_tokens: int | None = option(None, ge=1, help="Max new tokens in eval.")
    eval_backend: str | None = option(None, help="Eval backend (default: --backend).")
    distill_model: str | None = option(None, help="Model for distill (default: --model).")
    launcher: str | None = option(None, resume=False,
                                  help="Command that launches distillation, e.g. "
                                  "'accelerate launch --num_processes 8' (default: python).")
    curate: dict[str, Any] = option(default_factory=dict, flag="--curate", metavar="KEY=VALUE",
                                    help="An `ssb curate` option for every round, KEY=VALUE "
                                    "(repeatable; TOML: a [curate] table).")
    distill: dict[str, Any] = option(default_factory=dict, flag="--distill", metavar="KEY=VALUE",
                                     help="An `ssb distill` option, KEY=VALUE (repeatable; TOML: "
                                     "a [distill] table).")
    evaluate: dict[str, Any] = option(default_factory=dict, flag="--evaluate",
                                      metavar="KEY=VALUE",
                                      help="An `ssb eval` option, KEY=VALUE (repeatable; TOML: "
                                      "an [evaluate] table).")
    force: bool = option(False, resume=False, help="Rerun every stage even if complete.")

    NESTED: ClassVar[tuple[str, ...]] = ("curate", "distill", "evaluate")

    def check(self) -> None:
        from ssb.plugins import get_registry

        registry = get_registry()
        if not self.eval:
            self.eval = [self.dataset or self.domain]
        self.backend_options = registry.backend(self.backend).parse_options(
            self.backend_options)
        if self.rounds > 1:
            for name in {self.backend, self.eval_backend or self.backend}:
                if not registry.backend(name).loads_hf_dirs:
                    raise ConfigError(
                        f"--rounds > 1 curates with the merged round-(r-1) student, an HF "
                        f"directory the {name} backend cannot load; use a backend that loads "
                        "HF directories (transformers, vllm) for rounds")
        # Every stage's config, built and validated now: a bad setting fails before any stage.
        out = Path(self.out)
        self.curate_config(self.model, out / "curate")
        self.distill_config(self.distill_model or self.model, out / "curate", out / "distill")
        for spec in self.eval:
            self.eval_config(spec, self.model, out / "distill" / "adapter", out / "eval")

    # -- each stage's config (curate and eval: PipelineStages) ----------------------------
    def distill_config(self, model: str, curated: Path, out: Path):
        from ssb.stages.distill.trainer import DistillConfig

        values = {"curated": str(curated), "model": model, "out": str(out), "seed": self.seed,
                  "force": self.force, **self.distill}
        return stage_config(DistillConfig, values, "distill", self.COMMAND)


# Keys of an eval spec's query that set the evaluation of that dataset, not a dataset filter:
# ``math500=data/test.jsonl?limit=250&max_tokens=1024`` (they win over ``[evaluate]``).
EVAL_SPEC_KEYS = ("split", "limit", "max_tokens")


def parse_eval_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """``NAME[=SOURCE][?KEY=VALUE&...]`` -> (dataset, source, filters).

    ``arithmetic?n=300`` evaluates 300 generated problems; ``gsm8k=data/test.jsonl`` a local copy.
    The keys in :data:`EVAL_SPEC_KEYS` (``split``, ``limit``, ``max_tokens``) are returned among
    the filters; :meth:`PipelineStages.eval_config` takes them out as that dataset's settings.
    """
    head, _, query = spec.partition("?")
    name, _, source = head.partition("=")
    filters: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"eval spec {spec!r}: filters are KEY=VALUE joined by '&'")
        filters[key] = value
    return name, source or None, filters


def stage_config(cls: type, values: dict[str, Any], table: str, command: str):
    """A stage's config from a pipeline's values, validated; an error names the table."""
    try:
        return cls.from_mapping(values, where=f"[{table}]")
    except SsbError as exc:
        raise ConfigError(f"ssb {command}: [{table}] {exc}") from None


# -- running a stage in a child process ------------------------------------------------------

StageRunner = Callable[[str, Any, Path, "Reporter"], None]


def run_stage_process(stage: str, config: Any, out: Path, report: Reporter,
                      launcher: str | None = None) -> None:
    """Run one stage in a child process (see :mod:`ssb.stages.child`), relaying its events."""
    from ssb.stages.child import CONFIG_ENV, EVENT_PREFIX

    env = dict(os.environ)
    env[CONFIG_ENV] = json.dumps(config.to_dict())
    command = [sys.executable, "-m", "ssb.stages.child", stage]
    if launcher:
        command = [*shlex.split(launcher), "-m", "ssb.stages.child", stage]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="replace")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(EVENT_PREFIX):
            try:
                data = json.loads(line[len(EVENT_PREFIX):])
                if report.on_event is not None:
                    report.on_event(Event(**data))
                continue
            except (json.JSONDecodeError, TypeError):
                pass
        sys.stderr.write(redact_text(line))
    code = proc.wait()
    if code != 0:
        raise SsbError(f"stage {stage} failed (exit {code}); its output so far is saved in "
                       f"{out}; rerun the same command to resume after fixing the cause")


def run_stage(stage: str, config: Any, out: Path, report: Reporter, *, force: bool,
              launcher: str | None = None) -> bool:
    """Run a stage unless ``out`` already completed it with the same config; True if it ran."""
    marker = out / STAGE_DONE
    recorded = redact(config.manifest())
    if marker.exists() and not force:
        try:
            if json.loads(marker.read_text(encoding="utf-8"))["config"] == recorded:
                report.log(f"[skip] {stage}: complete in {out}")
                return False
        except (json.JSONDecodeError, KeyError):
            pass
    report.log(f"[run] {stage} -> {out}")
    started = time.time()
    run_stage_process(stage, config, out, report, launcher=launcher)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"stage": stage, "config": recorded,
                               "seconds": round(time.time() - started, 1)})
    return True


def merge_adapter(base_model: str, adapter: Path, out: Path) -> Path:
    """Fold a LoRA into the base weights (the next round's model), saved as an HF directory."""
    if (out / "config.json").exists():
        return out
    from peft import PeftModel

    from ssb.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(base_model, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tmp = out.with_name(out.name + ".partial")
    merged.save_pretrained(str(tmp), safe_serialization=True)
    load_tokenizer(base_model).save_pretrained(str(tmp))
    os.replace(tmp, out)
    return out


@dataclass
class RunResult:
    """Where the run wrote; ``rounds`` has one entry per round that ran (``round``, ``dir``,
    ``evals``, ``model``), the last with ``stopped: True`` (and only ``round``, ``dir``) when that
    round curated nothing and ended the rounds."""

    out: Path
    report: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)


def run(config: RunConfig, *, on_event: EventCallback | None = None) -> RunResult:
    """Run the pipeline into ``config.out`` (resumable); returns where the report is."""
    from ssb.journal import read_jsonl
    from ssb.stage import StageOutput
    from ssb.stages.curate import CURATED
    from ssb.stages.report import write_report

    config = config.validate()
    report = Reporter("run", on_event)
    out = Path(config.out)
    with StageOutput(out, "run", config.identity(), config.manifest(), force=True,
                     seed=config.seed) as stage:
        stage.start_work()
        base_model = config.model
        round_model = base_model
        distill_base = config.distill_model or base_model
        rounds = []
        for r in range(1, config.rounds + 1):
            rdir = out if config.rounds == 1 else out / f"round{r}"
            curated, distilled = rdir / "curate", rdir / "distill"
            run_stage("curate", config.curate_config(round_model, curated), curated, report,
                      force=config.force)
            if r > 1 and next(read_jsonl(curated / CURATED), None) is None:
                # The round-(r-1) student left nothing to learn from (every problem all-right,
                # all-wrong or teacher-wrong): that student is the result, not an error.
                report.log(f"round {r} curated no problems; the round-{r - 1} student is final",
                           round=r, stopped=True)
                rounds.append({"round": r, "dir": rdir, "stopped": True})
                break
            run_stage("distill", config.distill_config(distill_base if r == 1 else round_model,
                                                       curated, distilled),
                      distilled, report, force=config.force, launcher=config.launcher)
            adapter = distilled / "adapter"
            evals = {}
            for spec in config.eval:
                name = parse_eval_spec(spec)[0]
                if r == 1:
                    base_dir = out / "eval" / name / "base"
                    run_stage("eval", config.eval_config(spec, base_model, None, base_dir),
                              base_dir, report, force=config.force)
                student_dir = rdir / "eval" / name / "student"
                run_stage("eval", config.eval_config(spec, round_model if r > 1 else base_model,
                                                     adapter, student_dir),
                          student_dir, report, force=config.force)
                evals[name] = student_dir
            rounds.append({"round": r, "dir": rdir, "evals": evals, "model": round_model})
            if r < config.rounds:
                round_model = str(merge_adapter(round_model if r > 1 else distill_base, adapter,
                                                rdir / "merged"))
        path = write_report(out, config, rounds)
        stage.finish()
        return RunResult(out=out, report=path, rounds=rounds)


__all__ = ["PipelineStages", "RunConfig", "RunResult", "merge_adapter", "parse_eval_spec", "run",
           "run_stage", "stage_config"]
