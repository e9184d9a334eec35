"""``report.md`` of an ``ssb run``: settings, curation stats, training curves, base vs student.

The base-vs-student numbers come from :func:`ssb.stages.evaluate.compare_runs`, the same paired analysis
as ``ssb eval compare``, so the report and the command can never disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssb.journal import atomic_write_text


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _last_loss(metrics_path: Path) -> tuple[float | None, float | None, int]:
    """(first logged loss, last logged loss, steps) from distill/metrics.jsonl."""
    losses = []
    if metrics_path.exists():
        for line in metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row.get("loss"), (int, float)):
                losses.append(float(row["loss"]))
    if not losses:
        return None, None, 0
    return losses[0], losses[-1], len(losses)


def _curated_by(r: dict[str, Any]) -> str:
    """Which model curated a round: the base, or the round-(r-1) student and how it was served
    (recorded by :func:`ssb.stages.run.run`; read back from the curate manifest otherwise)."""
    if r.get("curated_by"):
        return str(r["curated_by"]).replace("|", "\\|")
    manifest = _read_json(Path(r["dir"]) / "curate" / "manifest.json") or {}
    cfg = manifest.get("config") or {}
    if not cfg:
        return "-"
    who = str(cfg.get("model")) + (f" + {cfg['adapter']}" if cfg.get("adapter") else "")
    return who.replace("|", "\\|")


def build_report(out: Path, cfg: Any, rounds: list[dict[str, Any]]) -> tuple[str, dict]:
    from ssb.stages.evaluate import compare_runs

    out = Path(out)
    lines = ["# SSB run report", ""]
    lines += ["## Settings", "", "```json", json.dumps(_settings(cfg), indent=2), "```", ""]

    lines += ["## Curation", "",
              "| round | curated by | problems seen | kept | all correct | all wrong "
              "| teacher wrong | errors | rollout accuracy |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        stats = _read_json(Path(r["dir"]) / "curate" / "stats.json") or {}
        skipped = stats.get("skipped", {})
        lines.append(
            f"| {r['round']} | {_curated_by(r)} | {stats.get('problems_seen', '-')} "
            f"| {stats.get('kept', '-')} "
            f"| {skipped.get('all_correct', '-')} | {skipped.get('all_wrong', '-')} "
            f"| {skipped.get('teacher_wrong', '-')} | {skipped.get('errors', '-')} "
            f"| {_pct(stats.get('rollout_accuracy'))} |"
        )
    lines.append("")
    stopped = [r for r in rounds if r.get("stopped")]
    for r in stopped:
        lines += [f"Round {r['round']} curated no problems, so the rounds ended there: the round "
                  f"{r['round'] - 1} student is the result.", ""]
    rounds = [r for r in rounds if not r.get("stopped")]

    lines += ["## Training", ""]
    charts: list[dict[str, Any]] = []  # drawn by the CLI (ssb.commands.charts) into plots/
    for r in rounds:
        ddir = Path(r["dir"]) / "distill"
        first, last, steps = _last_loss(ddir / "metrics.jsonl")
        loss_text = (f"loss {first:.4f} → {last:.4f} over {steps} logged steps"
                     if first is not None else "no logged steps")
        lines.append(f"- round {r['round']}: {loss_text}")
        charts.append({"kind": "training", "metrics": str(ddir / "metrics.jsonl"),
                       "heldout": str(ddir / "heldout.jsonl"),
                       "path": f"plots/training-round{r['round']}.png",
                       "title": f"round {r['round']}"})
        lines.append(f"  ![training curves round {r['round']}](plots/training-round{r['round']}.png)")
    lines.append("")

    lines += ["## Base vs student", ""]
    results: dict[str, Any] = {}
    datasets = sorted({name for r in rounds for name in r["evals"]})
    for name in datasets:
        base_dir = out / "eval" / name / "base"
        students = [(r["round"], r["evals"][name]) for r in rounds if name in r["evals"]]
        report = compare_runs([base_dir] + [d for _, d in students])
        results[name] = report
        lines += [f"### {name} ({report['shared_problems']} problems)", "",
                  "| model | accuracy | 95% CI | diff vs base (pts) | diff 95% CI | McNemar p "
                  "| significant |", "|---|---|---|---|---|---|---|"]
        for i, run in enumerate(report["runs"]):
            label = "base" if i == 0 else f"student (round {students[i - 1][0]})"
            c = report["comparisons"][i - 1] if i else None
            lines.append(
                f"| {label} | {_pct(run['accuracy'])} | {_pct(run['ci_low'])} – "
                f"{_pct(run['ci_high'])} | "
                + ("-" if c is None else f"{100 * c['diff']:+.1f}") + " | "
                + ("-" if c is None else f"{100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}")
                + " | "
                + ("-" if c is None or c["mcnemar_p"] is None else f"{c['mcnemar_p']:.3g}")
                + " | " + ("-" if c is None else ("yes" if c["significant"] else "no")) + " |"
            )
        lines.append("")
        for c in report["comparisons"]:
            lines.append(f"> {c['verdict']}")
        for note in report["notes"]:
            lines.append(f"> note: {note}")
        lines.append("")
    if len(rounds) > 1 and datasets:
        charts.append({"kind": "accuracy_per_round", "path": "plots/accuracy-per-round.png",
                       "series": {name: [r["accuracy"] for r in rep["runs"]]
                                  for name, rep in results.items()}})
        lines += ["![accuracy per round](plots/accuracy-per-round.png)", ""]
    lines += [f"Method: {results[datasets[0]]['method']}." if datasets else "", ""]
    return "\n".join(lines), results, charts


def _settings(cfg: Any) -> dict[str, Any]:
    """The pipeline config as JSON, secrets redacted by the same rule as every manifest."""
    from ssb.secrets import redact

    return redact(cfg.manifest() if hasattr(cfg, "manifest") else dict(cfg))


def write_report(out: Path, cfg: Any, rounds: list[dict[str, Any]]) -> Path:
    """report.md, report.json and charts.json (the data of every chart report.md links)."""
    from ssb.secrets import redact

    text, results, charts = build_report(out, cfg, rounds)
    atomic_write_text(Path(out) / "report.md", text)
    atomic_write_text(Path(out) / "report.json",
                      json.dumps(redact({"datasets": results}), indent=2, default=str) + "\n")
    atomic_write_text(Path(out) / CHARTS, json.dumps(charts, indent=2) + "\n")
    return Path(out) / "report.md"


CHARTS = "charts.json"
