"""Charts (PNG) drawn from the data the stages write; matplotlib lives here, never in a stage.

A stage that links charts from its report writes their data to ``charts.json`` beside it
(:data:`ssb.stages.report.CHARTS`); :func:`render_charts` draws every one.  From a notebook::

    from ssb.commands.charts import render_charts
    render_charts("runs/study")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rows(path: str | Path) -> list[dict[str, Any]]:
    from ssb.journal import read_jsonl

    path = Path(path)
    return list(read_jsonl(path, tolerate_torn_tail=True)) if path.exists() else []


def _save(fig: Any, path: Path) -> None:
    """Written atomically: a reader sees the old chart or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def plot_training(metrics: str | Path, out_png: str | Path, heldout: str | Path | None = None,
                  title: str = "") -> None:
    """Loss (each part), held-out KL/CE when measured, and grad-norm curves of one distill run."""
    plt = _plt()
    rows = _rows(metrics)
    held = _rows(heldout) if heldout else []
    fig, axes = plt.subplots(1, 3 if held else 2, figsize=(15 if held else 10, 4))
    ax_loss, ax_grad = axes[0], axes[-1]
    steps = [r["step"] for r in rows]
    ax_loss.plot(steps, [r["loss"] for r in rows], label="loss (per logged batch)", linewidth=2)
    for key in sorted({k for r in rows for k in r if k.startswith("loss_")}):
        ax_loss.plot(steps, [r.get(key) for r in rows], label=key, linestyle="--")
    ax_loss.set_xlabel("step")
    ax_loss.set_title(f"training loss {title}".strip())
    ax_loss.legend()
    if held:
        ax_held = axes[1]
        hs = [r["step"] for r in held]
        for key in ("kl", "ce"):
            if any(key in r for r in held):
                ax_held.plot(hs, [r.get(key) for r in held], marker="o", label=f"held-out {key}")
        ax_held.set_xlabel("step")
        ax_held.set_title("held-out records")
        ax_held.legend()
    ax_grad.plot(steps, [r.get("grad_norm") for r in rows], color="tab:red")
    ax_grad.set_xlabel("step")
    ax_grad.set_title("grad norm")
    fig.tight_layout()
    _save(fig, Path(out_png))
    plt.close(fig)


def plot_accuracy_per_round(series: dict[str, list[float]], out_png: str | Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, acc in series.items():
        ax.plot(range(len(acc)), [100 * a for a in acc], marker="o", label=name)
    ax.set_xlabel("round (0 = base)")
    ax.set_ylabel("accuracy (%)")
    ax.legend()
    fig.tight_layout()
    _save(fig, Path(out_png))
    plt.close(fig)


def plot_arm_accuracy(arms: list[dict[str, Any]], out_png: str | Path, title: str = "") -> None:
    """One bar per arm with its 95% CI (``arms``: name, accuracy, ci_low, ci_high)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 * len(arms) + 2, 4))
    names = [a["name"] for a in arms]
    acc = [100 * a["accuracy"] for a in arms]
    err = [[100 * (a["accuracy"] - a["ci_low"]) for a in arms],
           [100 * (a["ci_high"] - a["accuracy"]) for a in arms]]
    ax.bar(names, acc, yerr=err, capsize=6, color="tab:blue", alpha=0.8)
    for i, (v, top) in enumerate(zip(acc, (100 * a["ci_high"] for a in arms))):
        ax.text(i, top + 1, f"{v:.1f}", ha="center", va="bottom")  # above the CI bar
    ax.set_ylim(0, min(100, max(100 * a["ci_high"] for a in arms) + 8))
    ax.set_ylabel("accuracy (%) with 95% CI")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, Path(out_png))
    plt.close(fig)


def plot_arm_curves(arms: list[dict[str, Any]], out_png: str | Path) -> None:
    """Held-out KL and CE of every arm over training steps, overlaid (``arms``: name, heldout)."""
    plt = _plt()
    fig, (ax_kl, ax_ce) = plt.subplots(1, 2, figsize=(11, 4))
    for arm in arms:
        held = _rows(arm["heldout"])
        if not held:
            continue
        steps = [r["step"] for r in held]
        ax_kl.plot(steps, [r.get("kl") for r in held], marker="o", label=arm["name"])
        ax_ce.plot(steps, [r.get("ce") for r in held], marker="o", label=arm["name"])
    ax_kl.set_title("held-out KL(teacher || student)")
    ax_ce.set_title("held-out solution cross-entropy")
    for ax in (ax_kl, ax_ce):
        ax.set_xlabel("optimizer step")
        ax.legend()
    fig.tight_layout()
    _save(fig, Path(out_png))
    plt.close(fig)


def render_charts(out_dir: str | Path) -> list[Path]:
    """Draw every chart listed in ``out_dir/charts.json``; returns the PNGs written."""
    from ssb.stages.report import CHARTS

    out_dir = Path(out_dir)
    spec_path = out_dir / CHARTS
    if not spec_path.exists():
        return []
    written = []
    for chart in json.loads(spec_path.read_text(encoding="utf-8")):
        target = out_dir / chart["path"]
        kind = chart["kind"]
        if kind == "training":
            if not Path(chart["metrics"]).exists():
                continue
            plot_training(chart["metrics"], target, chart.get("heldout"), chart.get("title", ""))
        elif kind == "accuracy_per_round":
            plot_accuracy_per_round(chart["series"], target)
        elif kind == "arm_accuracy":
            plot_arm_accuracy(chart["arms"], target, chart.get("title", ""))
        elif kind == "arm_curves":
            plot_arm_curves(chart["arms"], target)
        else:
            continue
        written.append(target)
    return written
