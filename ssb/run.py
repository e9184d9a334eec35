"""The whole pipeline: curate -> distill -> eval (base and student) -> report, in rounds.

Each stage runs as its own ``ssb`` subprocess with the public CLI flags, so a stage is exactly what
a user would run by hand, its memory is returned between stages (llama.cpp, then torch), and each
stage keeps its own resume logic.  A stage whose outputs are complete and whose arguments are
unchanged is skipped, so rerunning the same ``ssb run`` after a crash continues where it stopped.

Round r > 1 curates and distills with the round r-1 student as the model: its LoRA is merged into
the weights (``merged/``, an HF directory) — backends that load HF directories (transformers, vLLM)
use it directly.  The llama.cpp backend needs a GGUF and cannot load merged HF weights, so rounds
beyond the first are refused there with a clear message.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ssb.errors import SsbError
from ssb.journal import atomic_write_json

STAGE_DONE = ".ssb-run-stage.json"  # written after a stage succeeds: the exact args it ran with


@dataclass
class PipelineConfig:
    out: str
    domain: str = "arithmetic"
    dataset: str | None = None
    source: str | None = None
    split: str = "train"
    limit: int | None = None
    backend: str = "llama.cpp"
    model: str = "default"
    backend_opt: list[str] = field(default_factory=list)
    rollouts: int = 4
    seed: int = 0
    rounds: int = 1
    eval: list[str] = field(default_factory=list)  # "NAME" or "NAME=SOURCE"
    eval_split: str = "test"
    eval_limit: int | None = None
    eval_max_tokens: int | None = None
    eval_backend: str | None = None  # default: the curate backend
    distill_model: str | None = None  # default: the curate model
    curate_args: list[str] = field(default_factory=list)  # extra flags, e.g. ["--max-tokens", "384"]
    distill_args: list[str] = field(default_factory=list)
    eval_args: list[str] = field(default_factory=list)
    force: bool = False


PRESETS: dict[str, dict[str, Any]] = {
    # The README's main job: offline, CPU, ~20-30 min on 2 cores with the real small model.
    "demo": {
        "domain": "arithmetic", "dataset": "arithmetic", "split": "train", "limit": 16,
        "backend": "llama.cpp", "model": "default", "backend_opt": ["n_threads=2"],
        "rollouts": 4, "seed": 0, "eval": ["arithmetic"], "eval_split": "test",
        "eval_limit": 30, "eval_max_tokens": 384,
        "curate_args": ["--max-tokens", "384", "--teacher-max-tokens", "512",
                        "--batch-size", "4"],
        "distill_args": ["--epochs", "1", "--lora-r", "16", "--lora-alpha", "32",
                         "--batch-size", "2", "--lr", "2e-4", "--temperature", "2",
                         "--loss", "kl=1,ce=0", "--max-length", "1024", "--logging-steps", "1"],
    },
    # The paper's recipe on a GPU: Qwen2.5-3B-Instruct, 256 GSM8K problems, vLLM rollouts.
    "paper": {
        "domain": "gsm8k", "dataset": "gsm8k", "split": "train", "limit": 256,
        "backend": "vllm", "model": "Qwen/Qwen2.5-3B-Instruct", "rollouts": 4, "seed": 0,
        "eval": ["gsm8k", "math500", "aime24", "amc23"], "eval_split": "test",
        "eval_max_tokens": 4096, "backend_opt": ["max_model_len=8192"],
        "curate_args": ["--preset", "paper"],
        "distill_args": ["--preset", "paper"],
    },
}


def resolve_config(flags: dict[str, Any], preset: str | None) -> PipelineConfig:
    """preset < config file/flags: ``flags`` holds only what the user set."""
    base: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise SsbError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        base.update(PRESETS[preset])
    base.update({k: v for k, v in flags.items() if v is not None and v != [] and v != ()})
    if "out" not in base:
        raise SsbError("ssb run needs --out DIR")
    cfg = PipelineConfig(**base)
    if not cfg.eval:
        cfg.eval = [cfg.dataset or cfg.domain]
    if cfg.rounds < 1:
        raise SsbError("--rounds must be >= 1")
    if cfg.rounds > 1 and (cfg.backend == "llama.cpp" or cfg.eval_backend == "llama.cpp"):
        raise SsbError(
            "--rounds > 1 curates with the merged round-(r-1) student, an HF directory the "
            "llama.cpp backend cannot load; use --backend transformers or vllm for rounds"
        )
    return cfg


# -- stage commands ------------------------------------------------------------------------------

def _opts(cfg: PipelineConfig) -> list[str]:
    out: list[str] = []
    for item in cfg.backend_opt:
        out += ["-B", item]
    return out


def curate_args(cfg: PipelineConfig, model: str, out: Path) -> list[str]:
    args = ["curate", "--domain", cfg.domain, "--backend", cfg.backend, "--model", model,
            "--split", cfg.split, "--rollouts", str(cfg.rollouts), "--seed", str(cfg.seed),
            "--out", str(out)]
    if cfg.dataset:
        args += ["--dataset", cfg.dataset]
    if cfg.source:
        args += ["--source", cfg.source]
    if cfg.limit is not None:
        args += ["--limit", str(cfg.limit)]
    return args + _opts(cfg) + list(cfg.curate_args)


def distill_args(cfg: PipelineConfig, model: str, curated: Path, out: Path) -> list[str]:
    return ["distill", "--curated", str(curated), "--model", model, "--out", str(out),
            "--seed", str(cfg.seed)] + list(cfg.distill_args)


def eval_args(cfg: PipelineConfig, spec: str, model: str, adapter: Path | None,
              out: Path) -> list[str]:
    name, _, source = spec.partition("=")
    args = ["eval", "--dataset", name, "--split", cfg.eval_split,
            "--backend", cfg.eval_backend or cfg.backend, "--model", model,
            "--seed", str(cfg.seed), "--out", str(out)]
    if source:
        args += ["--source", source]
    if adapter is not None:
        args += ["--adapter", str(adapter)]
    if cfg.eval_limit is not None:
        args += ["--limit", str(cfg.eval_limit)]
    if cfg.eval_max_tokens is not None:
        args += ["--max-tokens", str(cfg.eval_max_tokens)]
    return args + _opts(cfg) + list(cfg.eval_args)


def run_stage(args: list[str], out: Path, force: bool, log: Any) -> bool:
    """Run ``ssb <args>`` unless ``out`` already completed with the same args; True if it ran."""
    marker = out / STAGE_DONE
    if marker.exists() and not force:
        try:
            if json.loads(marker.read_text())["args"] == args:
                log(f"[skip] {args[0]}: complete in {out}")
                return False
        except (json.JSONDecodeError, KeyError):
            pass
    if force and "--force" not in args and args[0] in ("curate", "distill", "eval"):
        args = args + ["--force"]
    log(f"[run] ssb {shlex.join(args)}")
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "ssb", *args], env=os.environ.copy())
    if proc.returncode != 0:
        raise SsbError(f"stage `ssb {args[0]}` failed (exit {proc.returncode}); rerun the same "
                       "`ssb run` command to resume after fixing the cause")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"args": [a for a in args if a != "--force"],
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


def run_pipeline(cfg: PipelineConfig, log: Any = print) -> Path:
    from ssb.config import finish_manifest, start_manifest

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "pipeline.json", asdict(cfg))
    manifest = start_manifest(out, "run", asdict(cfg), seed=cfg.seed)
    base_model = cfg.model
    round_model = base_model
    distill_base = cfg.distill_model or base_model
    rounds = []
    for r in range(1, cfg.rounds + 1):
        rdir = out if cfg.rounds == 1 else out / f"round{r}"
        curated, distilled = rdir / "curate", rdir / "distill"
        run_stage(curate_args(cfg, round_model, curated), curated, cfg.force, log)
        run_stage(distill_args(cfg, distill_base if r == 1 else round_model, curated, distilled),
                  distilled, cfg.force, log)
        adapter = distilled / "adapter"
        evals = {}
        for spec in cfg.eval:
            name = spec.partition("=")[0]
            if r == 1:
                base_dir = out / "eval" / name / "base"
                run_stage(eval_args(cfg, spec, base_model, None, base_dir), base_dir,
                          cfg.force, log)
            student_dir = (rdir / "eval" / name / "student")
            run_stage(eval_args(cfg, spec, round_model if r > 1 else base_model, adapter,
                                student_dir), student_dir, cfg.force, log)
            evals[name] = student_dir
        rounds.append({"round": r, "dir": rdir, "evals": evals, "model": round_model})
        if r < cfg.rounds:
            round_model = str(merge_adapter(round_model if r > 1 else distill_base, adapter,
                                            rdir / "merged"))
    from ssb.report import write_report

    write_report(out, cfg, rounds)
    finish_manifest(out, manifest)
    return out / "report.md"


__all__ = ["PipelineConfig", "PRESETS", "resolve_config", "run_pipeline"]
