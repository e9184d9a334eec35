"""The model card of a distilled adapter: ``adapter/README.md``, what the hub and peft users look
for first.

:func:`write_model_card` (called by distill) records the base model, the curated data (records,
sha256, curation counts), the loss, T and the recipe, the training losses, and the ssb version
and commit.  :func:`add_evaluation` (called by ``run`` and ``study`` once their evaluations are
done) appends the paired comparison of the adapter against the base model.  ``ssb export``
copies the card beside the GGUF file (``NAME.gguf`` -> ``NAME.README.md``).

Plain text only: no library beyond the standard one, so writing a card never fails a run for
want of a package.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

CARD = "README.md"
EVAL_HEADING = "## Evaluation"


def ssb_commit() -> str | None:
    """The commit ssb runs from: pip's record of a VCS install, else the source tree's git HEAD
    (``+dirty`` when it has uncommitted changes), else None."""
    try:
        from importlib.metadata import distribution

        from ssb.plugins import CORE_DISTRIBUTION

        direct = distribution(CORE_DISTRIBUTION).read_text("direct_url.json")
        commit = (json.loads(direct or "{}").get("vcs_info") or {}).get("commit_id")
        if commit:
            return commit
    except Exception:  # not installed, or no such record: ask git
        pass
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _curation_stats(curated_file: Path) -> dict[str, Any]:
    try:
        return json.loads((curated_file.parent / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "—" if value is None else str(value)


def describe_base(model: str) -> tuple[str, str]:
    """(the hub id for the card's header, how to say what the base is)."""
    from ssb.models import DEFAULT_ALIASES, DEFAULT_FILENAME, DEFAULT_SHA256

    if model in DEFAULT_ALIASES:
        return ("Qwen/Qwen2.5-Coder-0.5B-Instruct",
                f"`Qwen/Qwen2.5-Coder-0.5B-Instruct` as ssb's embedded default, `{model}`: "
                f"`{DEFAULT_FILENAME}` (sha256 `{DEFAULT_SHA256}`), dequantized for training")
    return model, f"`{model}`"


def render_model_card(*, base_model: str, config: Mapping[str, Any], summary: Mapping[str, Any],
                      curated_file: Path, curated_sha256: str, records: Sequence[Any],
                      version: str, commit: str | None) -> str:
    """The card's text (markdown with the hub's YAML header)."""
    domains = sorted({getattr(r, "domain", "?") for r in records})
    datasets = sorted({getattr(r, "dataset", "?") for r in records})
    templates = sorted({getattr(r, "template", "?") for r in records})
    stats = _curation_stats(curated_file)
    alignment = summary.get("alignment") or {}
    hub_id, base_text = describe_base(base_model)
    lines = [
        "---",
        f"base_model: {json.dumps(hub_id)}",
        "library_name: peft",
        "tags: [lora, distillation, ssb, semantic-soft-bootstrapping]",
        "---",
        "",
        f"# LoRA adapter for {hub_id}, distilled with ssb",
        "",
        "Semantic Soft Bootstrapping ([arXiv 2512.05105](https://arxiv.org/abs/2512.05105)): the "
        "base model, shown one right and one wrong attempt of its own as hints, wrote each "
        "solution; this adapter was trained so that the model *without* hints matches the "
        "hinted model's token distributions on those solutions.",
        "",
        "## Base model",
        "",
        f"{base_text}.  Load the adapter on top of it: `PeftModel.from_pretrained(base, DIR)`;",
        "`ssb export` converts it for llama.cpp.",
        "",
        "## Training data",
        "",
        f"- curated records: {len(records)} (`{curated_file.name}`, sha256 `{curated_sha256}`)",
        f"- domain: {', '.join(domains)}; dataset: {', '.join(datasets)}; prompt template: "
        f"{', '.join(templates)}",
    ]
    if stats:
        lines.append(f"- curation: {_fmt(stats.get('problems_seen'))} problems seen, "
                     f"{_fmt(stats.get('kept'))} kept; rollout accuracy "
                     f"{_fmt(stats.get('rollout_accuracy'))}, hinted-teacher accuracy "
                     f"{_fmt(stats.get('teacher_accuracy'))}")
    if alignment:
        lines.append(f"- trained on: {_fmt(alignment.get('kept'))} records, "
                     f"{_fmt(alignment.get('solution_tokens'))} solution tokens (truncated "
                     f"{_fmt(alignment.get('truncated'))}, dropped "
                     f"{_fmt(alignment.get('dropped'))})")
    recipe = [("loss", "loss"), ("temperature T", "temperature"), ("teacher", "teacher"),
              ("LoRA rank r", "lora_r"), ("LoRA alpha", "lora_alpha"),
              ("LoRA dropout", "lora_dropout"), ("target modules", "target_modules"),
              ("learning rate", "lr"), ("scheduler", "lr_scheduler"),
              ("warmup steps", "warmup_steps"), ("epochs", "epochs"),
              ("max steps", "max_steps"), ("batch size", "batch_size"),
              ("gradient accumulation", "grad_accum"), ("max length", "max_length"),
              ("dtype", "dtype"), ("seed", "seed")]
    lines += ["", "## Recipe", "", "| setting | value |", "|---|---|"]
    lines += [f"| {label} | `{config[key]}` |" for label, key in recipe if key in config]
    lines += ["", "## Training", "",
              f"- optimizer steps: {_fmt(summary.get('steps'))}; processes: "
              f"{_fmt(summary.get('processes'))}; device: {_fmt(summary.get('device'))} "
              f"({_fmt(summary.get('dtype'))})",
              f"- loss (`{config.get('loss')}`): first logged "
              f"{_fmt(summary.get('first_loss'))}, last {_fmt(summary.get('last_loss'))}, "
              f"mean {_fmt(summary.get('train_loss'))}"]
    first, last = summary.get("heldout_first"), summary.get("heldout_last")
    if first and last:
        lines.append(f"- held-out KL(teacher‖student): {_fmt(first.get('kl'))} → "
                     f"{_fmt(last.get('kl'))}; held-out CE: {_fmt(first.get('ce'))} → "
                     f"{_fmt(last.get('ce'))} ({_fmt(last.get('tokens'))} tokens)")
    lines += ["", EVAL_HEADING, "",
              "Not evaluated by this run: `ssb eval --adapter DIR` and `ssb eval compare` "
              "measure it (`ssb run` and `ssb study` fill this section in).", "",
              "## Provenance", "",
              f"- ssb {version} (distribution `softboot`), commit `{commit or 'unknown'}`",
              "- the run's full configuration: `../manifest.json`", ""]
    return "\n".join(lines)


def write_model_card(adapter_dir: str | os.PathLike, *, base_model: str,
                     config: Mapping[str, Any], summary: Mapping[str, Any], curated_file: Path,
                     records: Sequence[Any]) -> Path:
    """Write ``adapter_dir/README.md`` (replacing peft's placeholder card)."""
    from ssb import __version__
    from ssb.journal import atomic_write_text
    from ssb.stage import sha256_file

    text = render_model_card(base_model=base_model, config=config, summary=summary,
                             curated_file=Path(curated_file),
                             curated_sha256=sha256_file(curated_file), records=records,
                             version=__version__, commit=ssb_commit())
    path = Path(adapter_dir) / CARD
    atomic_write_text(path, text)
    return path


def add_evaluation(adapter_dir: str | os.PathLike,
                   pairs: Mapping[str, tuple[Path, Path]]) -> Path | None:
    """Replace the card's evaluation section with ``base`` vs this adapter on each dataset:
    ``pairs`` maps a dataset name to (base eval DIR, adapter eval DIR).  No card: nothing."""
    from ssb.journal import atomic_write_text
    from ssb.stages.evaluate import compare_runs

    path = Path(adapter_dir) / CARD
    if not path.is_file() or not pairs:
        return None
    rows = ["| dataset | problems | base | this adapter | difference (95% CI) | McNemar p |",
            "|---|---|---|---|---|---|"]
    verdicts = []
    for name, (base_dir, adapter_eval) in pairs.items():
        if not (Path(base_dir) / "summary.json").is_file() or \
                not (Path(adapter_eval) / "summary.json").is_file():
            continue
        report = compare_runs([base_dir, adapter_eval])
        c = report["comparisons"][0]
        base, mine = report["runs"][0], report["runs"][1]
        mc = "—" if c["mcnemar_p"] is None else f"{c['mcnemar_p']:.3g}"
        rows.append(f"| {name} | {c['n']} | {100 * base['accuracy']:.1f}% | "
                    f"{100 * mine['accuracy']:.1f}% | {100 * c['diff']:+.1f} "
                    f"({100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}) | {mc} |")
        verdicts.append(f"- {name}: {c['verdict']}")
    if not verdicts:
        return None
    section = "\n".join([EVAL_HEADING, "", *rows, "", *verdicts, ""])
    text = path.read_text(encoding="utf-8")
    head, found, tail = text.partition(EVAL_HEADING)
    rest = tail.split("\n## ", 1)
    after = "\n## " + rest[1] if found and len(rest) > 1 else ""
    atomic_write_text(path, (head if found else text + "\n") + section + after)
    return path


def add_study_evaluations(out: str | os.PathLike) -> None:
    """``ssb study``'s layout: each trained arm's card (``arms/ARM/adapter``, a rounds arm's
    ``rounds/ARM/distill/adapter``) gets the paired comparison with the base on every dataset
    evaluated (``eval/DATASET/{base,ARM}``)."""
    out = Path(out)
    adapters = [(a, a.parent.name) for a in out.glob("arms/*/adapter")] + \
        [(a, a.parent.parent.name) for a in out.glob("rounds/*/distill/adapter")]
    for adapter, arm in sorted(adapters):
        pairs = {d.name: (d / "base", d / arm) for d in sorted((out / "eval").glob("*"))
                 if (d / arm).is_dir()}
        add_evaluation(adapter, pairs)
