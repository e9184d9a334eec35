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

Round r > 1 curates and distills with the round r-1 student as the model.  Distill trains on its
LoRAs merged into the weights (``merged/``, an HF directory; fp32 on a CPU), which is also its
teacher.
Curate and eval load that directory on backends that load HF directories
(:attr:`ssb.types.BackendFactory.loads_hf_dirs`: transformers, vllm); llama.cpp serves the base
model (not re-quantized) plus the rounds' LoRAs folded into one adapter of rank r1+...+rr
(``round{r}/student``, :func:`ssb.export.fold_adapters`), the same model up to float rounding.
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
from ssb.models import MERGE_STAMP, merge_adapter  # noqa: F401  (re-exported)
from ssb.option_groups import PipelineOptions
from ssb.options import CONTROL_OPTIONS, ConfigError, StageConfig, option
from ssb.secrets import redact, redact_text

STAGE_DONE = ".ssb-run-stage.json"  # written after a stage succeeds: the config it ran with


class PipelineStages:
    """The curate and eval configs a pipeline (``run``, ``study``) builds from its own fields and
    its ``[curate]`` / ``[evaluate]`` tables; the table wins over the pipeline-level value."""

    def check_stage_tables(self) -> None:
        """A stage's ``out`` is the pipeline's: ``--curate out=/elsewhere`` would write outside
        the run's tree (and mark the empty ``curate/`` complete).  Called by :meth:`curate_config`,
        which every pipeline's check calls first."""
        for table in self.NESTED:
            if "out" in {str(k).replace("-", "_") for k in getattr(self, table, None) or {}}:
                raise ConfigError(f"ssb {self.COMMAND}: [{table}] out: each stage writes under "
                                  f"the {self.COMMAND}'s --out; remove it")

    @classmethod
    def table_class(cls, table: str) -> type | None:
        """The stage config whose options a nested table holds (its keys merge by field name;
        :func:`ssb.options.resolve`); None for another table (``-B``'s)."""
        from ssb.stages.curate import CurateConfig
        from ssb.stages.distill.trainer import DistillConfig
        from ssb.stages.evaluate import EvalConfig

        return {"curate": CurateConfig, "distill": DistillConfig,
                "evaluate": EvalConfig}.get(table)

    def stage_control(self) -> dict[str, bool]:
        """What each stage is told to do with what its directory holds: ``--restart`` starts
        every stage from nothing; ``--accept-changed-config`` lets a stage go on under a changed
        config (curate and eval resume; distill and teacher-logits start over)."""
        return {"restart": self.restart, "accept_changed_config": self.accept_changed_config}

    def check_pipeline(self) -> None:
        """What every pipeline checks before any stage: the domain (a default only when one is
        installed or the dataset names it), the launcher (a command that exists) and the
        backend's options (parsed by the backend), so a bad value fails now, not after curate;
        ``eval`` defaults to the training dataset."""
        from ssb.plugins import get_registry

        registry = get_registry()
        if not self.domain:
            if self.dataset:
                self.domain = registry.dataset(self.dataset).domain
            else:
                domains = registry.domains()
                if len(domains) != 1:
                    raise ConfigError(
                        f"`ssb {self.COMMAND}` needs --domain: "
                        + (f"{len(domains)} domains are installed ({', '.join(domains)})"
                           if domains else "no domain plugin is installed (pip install "
                           "softboot-gsm8k, or another domain plugin)"))
                self.domain = domains[0]
        if self.launcher is not None:
            check_launcher(self.launcher)
        if not self.eval:
            self.eval = [self.dataset or self.domain]
        self.backend_options = registry.backend(self.backend).parse_options(
            self.backend_options)

    def curate_config(self, model: str, out: Path, overrides: dict[str, Any] | None = None):
        """``overrides``: options over the ``[curate]`` table (a study's rounds arm)."""
        from ssb.stages.curate import CurateConfig

        self.check_stage_tables()
        values = {"domain": self.domain, "backend": self.backend, "model": model, "out": out,
                  "dataset": self.dataset, "source": self.source, "split": self.split,
                  "limit": self.limit, "seed": self.seed,
                  "backend_options": dict(self.backend_options), **self.stage_control(),
                  **self.curate, **(overrides or {})}
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
                  "limit": self.eval_limit, **self.stage_control(),
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
class RunConfig(PipelineStages, PipelineOptions, StageConfig):
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

    # The fields it shares with `ssb study` are declared once, in PipelineOptions.
    rounds: int = option(1, ge=1, help="Iterative bootstrapping rounds.")
    eval_max_tokens: int | None = option(None, ge=1, help="Max new tokens in eval.")
    eval_backend: str | None = option(None, help="Eval backend (default: --backend).")

    NESTED: ClassVar[tuple[str, ...]] = ("curate", "distill", "evaluate")

    def check(self) -> None:
        from ssb.plugins import get_registry

        self.check_pipeline()
        registry = get_registry()
        if self.rounds > 1:
            for name in {self.backend, self.eval_backend or self.backend}:
                if serves_students(registry.backend(name)) is None:
                    raise ConfigError(
                        f"--rounds > 1 curates with the round-(r-1) student, which the {name} "
                        "backend cannot load: it loads neither HF directories (the merged "
                        "student) nor LoRA adapters (the base plus the rounds' adapters)")
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
                  "report_to": self.report_to, **self.stage_control(), **self.distill}
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
    from ssb.processes import child_env, wrap_command
    from ssb.stages.child import CONFIG_ENV, EVENT_PREFIX

    # The child dies with this process (ssb.processes): a launcher through the exec wrapper,
    # the stage child itself first thing in its main.  Started from the thread that waits for it.
    env = child_env()
    env[CONFIG_ENV] = json.dumps(config.to_dict())
    command = [sys.executable, "-m", "ssb.stages.child", stage]
    if launcher:
        command = wrap_command([*shlex.split(launcher), "-m", "ssb.stages.child", stage])
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


def check_launcher(launcher: str) -> None:
    """A launcher whose command does not exist is refused now, not after curate has run."""
    import shutil

    try:
        words = shlex.split(launcher)
    except ValueError as exc:
        raise ConfigError(f"--launcher {launcher!r}: {exc}") from None
    if not words:
        raise ConfigError("--launcher is empty; leave it out to run distill with python")
    command = words[0]
    if shutil.which(command) is None:
        where = "is not an executable file" if os.sep in command else "is not on PATH"
        raise ConfigError(f"--launcher {launcher!r}: {command!r} {where}")


def _comparable(config: dict[str, Any], ignored: frozenset[str] = frozenset()
                ) -> dict[str, Any]:
    """A recorded stage config without the options that only steer how the stage treats its
    directory (``--restart``, ``--accept-changed-config``, the old ``--force``) and those that
    do not change what it computes (``ignored``: its ``resume=False`` options, e.g. batch sizes,
    checkpoint spacing, ``--teacher-cache-gib``; one added later is absent from older records)."""
    return {k: v for k, v in config.items() if k not in CONTROL_OPTIONS and k not in ignored}


def stage_inputs(config: Any) -> dict[str, str]:
    """Fingerprints of what a stage reads that a pipeline makes and may remake under the same
    path: its LoRA adapter(s), its curated records, a merged model (by its stamp).  A completed
    stage whose inputs changed is stale even though its config did not."""
    from ssb.models import adapter_fingerprint
    from ssb.stage import sha256_file

    inputs: dict[str, str] = {}
    adapter = getattr(config, "adapter", None)
    for value in str(adapter).split(",") if adapter else []:
        path = Path(value.strip())
        if path.is_dir():
            inputs[f"adapter:{path}"] = adapter_fingerprint(path)
        elif path.is_file():
            inputs[f"adapter:{path}"] = sha256_file(path)
    curated = getattr(config, "curated", None)
    if curated:
        path = Path(curated) / "curated.jsonl" if Path(curated).is_dir() else Path(curated)
        if path.is_file():
            inputs["curated"] = sha256_file(path)
    model = getattr(config, "model", None)
    if isinstance(model, str) and (Path(model) / MERGE_STAMP).is_file():
        inputs["model"] = sha256_file(Path(model) / MERGE_STAMP)
    return inputs


def run_stage(stage: str, config: Any, out: Path, report: Reporter, *, rerun: bool = False,
              launcher: str | None = None) -> bool:
    """Run a stage unless ``out`` already completed it with the same config and the same inputs
    (:func:`stage_inputs`; ``rerun``: run it anyway); True if it ran.  A completed stage whose
    inputs changed (an arm retrained, so its adapter is another) is moved aside whole
    (``OUT.stale-TIME``) and run afresh: its results describe a model that is gone."""
    marker = out / STAGE_DONE
    recorded = redact(config.manifest())
    ignored = frozenset(s.name for s in config.specs() if not s.resume)
    inputs = stage_inputs(config)
    if marker.exists() and not rerun:
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))
            if _comparable(done["config"], ignored) == _comparable(recorded, ignored):
                changed = sorted(k for k in set(inputs) | set(done.get("inputs", inputs))
                                 if done.get("inputs", inputs).get(k) != inputs.get(k))
                if not changed:
                    report.log(f"[skip] {stage}: complete in {out}")
                    return False
                stale = out.with_name(f"{out.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(out, stale)
                report.log(f"[stale] {stage}: {', '.join(changed)} changed since it ran in "
                           f"{out}; its outputs moved to {stale}")
        except (json.JSONDecodeError, KeyError, AttributeError):
            pass
    report.log(f"[run] {stage} -> {out}")
    started = time.time()
    run_stage_process(stage, config, out, report, launcher=launcher)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"stage": stage, "config": recorded, "inputs": inputs,
                               "seconds": round(time.time() - started, 1)})
    return True


# -- rounds: the round-r student on each backend ----------------------------------------------

STUDENT_DIR = "student"  # round{r}/student: rounds 1..r's adapters folded into one peft LoRA


def serves_students(factory: Any) -> str | None:
    """How a backend serves a round-r student: ``"merged"`` (it loads the merged HF directory,
    as today), ``"adapter"`` (the base model plus the rounds' LoRAs folded into one adapter:
    llama.cpp, without re-quantizing the base), or None (it can do neither)."""
    from ssb.types import ADAPTER_GGUF, ADAPTER_PEFT

    if factory.loads_hf_dirs:
        return "merged"
    if factory.adapter_formats & {ADAPTER_GGUF, ADAPTER_PEFT}:
        return "adapter"
    return None


def round_adapters(out: Path, r: int) -> list[Path]:
    """The LoRAs of rounds 1..r of a multi-round run in ``out``, in order."""
    return [out / f"round{i}" / "distill" / "adapter" for i in range(1, r + 1)]


def student_adapter(out: Path, r: int) -> Path:
    """``round{r}/student``: the round-r student as one peft LoRA on the base model (rounds
    1..r folded, :func:`ssb.export.fold_adapters`); made once, remade only if a round's adapter
    changed."""
    from ssb.export import ensure_folded_adapter

    return ensure_folded_adapter(round_adapters(out, r), out / f"round{r}" / STUDENT_DIR)


def student_on(factory: Any, base_model: str, merged: str, student: Path) -> tuple[str, str | None]:
    """(model, adapter) that serve a round's student on ``factory``'s backend: the merged HF
    directory, or the base with the folded adapter (exported to GGUF if that is all it loads)."""
    from ssb.types import ADAPTER_PEFT

    if serves_students(factory) == "merged":
        return merged, None
    if ADAPTER_PEFT in factory.adapter_formats:
        return base_model, str(student)
    from ssb.export import ensure_gguf_adapter

    return base_model, str(ensure_gguf_adapter(student, student / "adapter.gguf",
                                               base=base_model))


def student_adapters(path: str | os.PathLike) -> list[Path] | None:
    """The ordered adapters of the student a run directory names, or None if ``path`` is none.

    ``RUN/roundR`` (a round of ``ssb run --rounds N``): rounds 1..R's adapters; ``RUN`` of a
    multi-round run: its last round with a finished adapter; ``RUN`` of a one-round run (or any
    directory holding ``distill/adapter``): that adapter.
    """
    import re

    from ssb.models import ADAPTER_CONFIG

    path = Path(path)

    def finished(d: Path) -> bool:
        return (d / "distill" / "adapter" / ADAPTER_CONFIG).is_file()

    def rounds_of(run: Path, r: int) -> list[Path]:
        adapters = round_adapters(run, r)
        missing = [a for a in adapters if not (a / ADAPTER_CONFIG).is_file()]
        if missing:
            raise SsbError(f"{run / f'round{r}'}: the round-{r} student needs every earlier "
                           f"round's adapter; {missing[0]} is missing")
        return adapters

    m = re.fullmatch(r"round(\d+)", path.name)
    if m and finished(path) and int(m[1]) >= 1:
        return rounds_of(path.parent, int(m[1]))
    if finished(path):
        return [path / "distill" / "adapter"]
    numbered = [int(d.name[5:]) for d in path.glob("round*")
                if re.fullmatch(r"round\d+", d.name) and finished(d)] if path.is_dir() else []
    if numbered:
        return rounds_of(path, max(numbered))
    return None


@dataclass
class RunResult:
    """Where the run wrote; ``rounds`` has one entry per round that ran (``round``, ``dir``,
    ``evals``, ``model``, ``curated_by``), the last with ``stopped: True`` (and only ``round``,
    ``dir``, ``curated_by``) when that round curated nothing and ended the rounds."""

    out: Path
    report: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)


def run(config: RunConfig, *, on_event: EventCallback | None = None) -> RunResult:
    """Run the pipeline into ``config.out`` (resumable); returns where the report is.

    Round r > 1: distill trains a LoRA on the merged round-(r-1) model (``round{r-1}/merged``,
    an HF directory, fp32 on a CPU), with that model as the teacher.  Curate and eval serve the round's student as the
    backend can (:func:`student_on`): the merged directory (transformers, vllm) or the base model
    plus rounds 1..r's adapters folded into one (``round{r}/student``; llama.cpp).
    """
    from ssb.journal import read_jsonl
    from ssb.plugins import get_registry
    from ssb.stage import StageOutput
    from ssb.stages.curate import CURATED
    from ssb.stages.report import write_report

    config = config.validate()
    report = Reporter("run", on_event)
    out = Path(config.out)
    registry = get_registry()
    curate_backend = registry.backend(config.backend)
    eval_backend = registry.backend(config.eval_backend or config.backend)
    with StageOutput(out, "run", config.identity(), config.manifest(), force=True,
                     seed=config.seed) as stage:
        stage.start_work()
        base_model = config.model
        round_model = base_model  # merged HF directory of the round-(r-1) student (r > 1)
        distill_base = config.distill_model or base_model
        curated_by = f"base ({base_model})"
        rounds = []
        for r in range(1, config.rounds + 1):
            rdir = out if config.rounds == 1 else out / f"round{r}"
            curated, distilled = rdir / "curate", rdir / "distill"
            curate_cfg = config.curate_config(round_model, curated)
            if r > 1 and serves_students(curate_backend) == "adapter":
                model, adapter = student_on(curate_backend, base_model, round_model,
                                            out / f"round{r - 1}" / STUDENT_DIR)
                curate_cfg = curate_cfg.replace(model=model, adapter=adapter)
            run_stage("curate", curate_cfg, curated, report, rerun=config.restart)
            if r > 1 and next(read_jsonl(curated / CURATED), None) is None:
                # The round-(r-1) student left nothing to learn from (every problem all-right,
                # all-wrong or teacher-wrong): that student is the result, not an error.
                report.log(f"round {r} curated no problems; the round-{r - 1} student is final",
                           round=r, stopped=True)
                rounds.append({"round": r, "dir": rdir, "stopped": True,
                               "curated_by": curated_by})
                break
            run_stage("distill", config.distill_config(distill_base if r == 1 else round_model,
                                                       curated, distilled),
                      distilled, report, rerun=config.restart, launcher=config.launcher)
            adapter = distilled / "adapter"
            student = None
            if r > 1 and "adapter" in {serves_students(curate_backend),
                                        serves_students(eval_backend)}:
                student = student_adapter(out, r)  # rounds 1..r on the base model
            elif r == 1 and config.rounds > 1 and serves_students(curate_backend) == "adapter":
                student = student_adapter(out, 1)  # what round 2 curates with
            evals = {}
            for spec in config.eval:
                name = parse_eval_spec(spec)[0]
                if r == 1:
                    base_dir = out / "eval" / name / "base"
                    run_stage("eval", config.eval_config(spec, base_model, None, base_dir),
                              base_dir, report, rerun=config.restart)
                student_dir = rdir / "eval" / name / "student"
                if r == 1 or serves_students(eval_backend) == "merged":
                    eval_cfg = config.eval_config(spec, round_model if r > 1 else base_model,
                                                  adapter, student_dir)
                else:  # the base plus the folded adapter (eval exports it where it must)
                    eval_cfg = config.eval_config(spec, base_model, student, student_dir)
                run_stage("eval", eval_cfg, student_dir, report, rerun=config.restart)
                evals[name] = student_dir
            rounds.append({"round": r, "dir": rdir, "evals": evals, "model": round_model,
                           "curated_by": curated_by})
            if r < config.rounds:
                round_model = str(merge_adapter(round_model if r > 1 else distill_base, adapter,
                                                rdir / "merged"))
                curated_by = (f"round-{r} student ({round_model})"
                              if serves_students(curate_backend) == "merged" else
                              f"round-{r} student ({base_model} + "
                              + ("round 1's LoRA)" if r == 1 else f"rounds 1-{r}'s LoRAs folded)"))
        path = write_report(out, config, rounds)
        stage.finish()
        return RunResult(out=out, report=path, rounds=rounds)


__all__ = ["PipelineStages", "RunConfig", "RunResult", "check_launcher", "merge_adapter",
           "parse_eval_spec", "run",
           "run_stage", "serves_students", "stage_config", "student_adapters"]
