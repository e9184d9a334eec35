"""``ssb study``: several training arms on one curated set, one paired evaluation.

Does SSB beat the base model, and does its soft teacher signal beat plain fine-tuning on the very
same verified solutions (rejection-sampling SFT)?  A study answers both with one command:

1. **curate** once (the ``[curate]`` options) into ``DIR/curate`` -- or take records curated
   before (``records = DIR``: its train/ and heldout/ curated.jsonl, e.g. a published study's);
2. **split** the kept records, seeded by record id, into ``DIR/data/train`` and ``DIR/data/heldout``
   (``heldout`` records are never trained on: every arm's held-out KL and CE are measured on them
   every ``eval_steps`` optimizer steps, so the training curves are not one noisy batch);
3. **distill** every training arm on the identical training records: an arm is a name plus
   ``ssb distill`` options over the shared ``[distill]`` ones (default arms: ``ssb`` = the paper's
   KL at T=2 with the online teacher; ``sft`` = cross-entropy on the same solutions, no teacher).
   A **prompt arm** (``prompts = [...]``) trains nothing: it is the base model with another student
   instruction, chosen among the listed templates by accuracy on a dev slice (``select_on``, an
   eval spec), never on the eval sets.  A **rounds arm** (``round_of = ARM``) is the next
   bootstrapping round of a trained arm: it curates new problems with that arm's student and
   trains on it merged (:mod:`ssb.stages.study_rounds`);
4. **evaluate** the base model and every arm on the identical problems with identical decoding.
   The order puts the most important answer first: the base and then each arm in turn (trained,
   then evaluated) on the first eval set; then every later eval set;
5. **report**: ``DIR/study.json`` and ``DIR/report.md`` -- accuracy per arm with a 95% CI, paired
   differences vs ``base``, vs ``sft`` and vs ``prompt`` (bootstrap CI, exact McNemar p,
   discordant counts), held-out curves and accuracy charts (``charts.json``, drawn by the CLI),
   rewritten after every completed evaluation (``complete: false`` and ``pending`` until the end).

Every step runs as its own resumable stage (a child process fed a validated config), and a study
killed at any point continues where it stopped when the same command is rerun.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ssb.errors import DataError, SsbError
from ssb.events import EventCallback, Reporter
from ssb.journal import atomic_write_json, atomic_write_text, read_jsonl
from ssb.option_groups import PipelineOptions
from ssb.options import ConfigError, StageConfig, option
from ssb.secrets import redact
from ssb.stages.run import PipelineStages, parse_eval_spec, run_stage, stage_config
from ssb.stages.study_rounds import (arm_table, check_round_arm, is_round_arm, round_dir,
                                     round_summary, run_round_arm)
from ssb.stages.study_rounds import train_dir as arm_train_dir

DEFAULT_ARMS: list[dict[str, Any]] = [
    {"name": "ssb", "loss": "kl=1,ce=0", "teacher": "online", "temperature": 2.0},
    {"name": "sft", "loss": "ce=1", "teacher": "none"},
]
BASE = "base"
# Arms the report compares every other arm against, when the study has them.
BASELINES = ("sft", "prompt")


def is_prompt_arm(arm: dict[str, Any]) -> bool:
    """A training-free arm: the base model with another instruction (``prompts = [...]``)."""
    return "prompts" in arm


@dataclass
class StudyConfig(PipelineStages, PipelineOptions, StageConfig):
    """``ssb study``: one curated set, several arms, one paired evaluation."""

    COMMAND: ClassVar[str] = "study"
    NESTED: ClassVar[tuple[str, ...]] = ("curate", "distill", "evaluate")

    # The fields it shares with `ssb run` are declared once, in PipelineOptions.
    heldout: int = option(16, ge=0, help="Kept records held out of training (held-out curves).")
    records: Path | None = option(None, metavar="DIR", help="Train on records curated before "
                                  "instead of curating: DIR holds train/curated.jsonl and "
                                  "heldout/curated.jsonl (a study's data/ folder, e.g. a "
                                  "published one); no curate stage runs, and --heldout applies "
                                  "only to rounds arms.")
    eval_steps: int = option(5, ge=0, help="Measure the held-out loss every N optimizer steps.")
    arms: list[dict[str, Any]] = option(
        default_factory=lambda: [dict(a) for a in DEFAULT_ARMS], cli=False,
        help="Arms: each a table with a name and `ssb distill` options, a prompt arm "
        "(name, prompts = [templates], select_on = eval spec of a dev slice) or a rounds arm "
        "(name, round_of = an earlier trained arm, curate = {options for its new problems}) "
        "(TOML: [[arms]]).")

    def check(self) -> None:
        self.check_pipeline()
        names = [a.get("name") for a in self.arms]
        if not self.arms or not all(isinstance(n, str) and n for n in names):
            raise ConfigError("--arms: every arm needs a name")
        if len(set(names)) != len(names) or BASE in names:
            raise ConfigError(f"arm names must be unique and not {BASE!r}: {names}")
        out = Path(self.out)
        if self.records is not None:
            for part in ("train", "heldout"):
                if not (Path(self.records) / part / "curated.jsonl").is_file():
                    raise ConfigError(f"--records {self.records}: no {part}/curated.jsonl "
                                      "(give a study's data/ folder)")
        else:
            self.curate_config(self.model, out / "curate")
        earlier: dict[str, dict[str, Any]] = {}
        for arm in self.arms:
            for key in [k for k in arm if k in ("select-on", "round-of")]:  # TOML spelling
                arm.setdefault(key.replace("-", "_"), arm.pop(key))
            if is_prompt_arm(arm):
                self._check_prompt_arm(arm)
            elif is_round_arm(arm):
                check_round_arm(self, arm, earlier)
            else:
                self.distill_config(arm, out / "data" / "train", out / "data" / "heldout",
                                    arm_train_dir(out, arm))
            earlier[arm["name"]] = arm
        for spec in self.eval:
            self.eval_config(spec, self.model, None, out / "eval")

    def _check_prompt_arm(self, arm: dict[str, Any]) -> None:
        where = f"[[arms]] {arm['name']!r}"
        prompts = arm.get("prompts")
        if (not isinstance(prompts, list) or not prompts
                or not all(isinstance(p, str) and p for p in prompts)):
            raise ConfigError(f"{where}: prompts must be a non-empty list of template names")
        unknown = set(arm) - {"name", "prompts", "select_on"}
        if unknown:
            raise ConfigError(f"{where}: a prompt arm takes name, prompts and select_on; "
                              f"unknown: {sorted(unknown)}")
        select_on = arm.get("select_on")
        if len(prompts) > 1 and not isinstance(select_on, str):
            raise ConfigError(f"{where}: {len(prompts)} prompts need select_on, the eval spec "
                              "of the dev slice that chooses one (never an eval set)")
        if select_on is not None and select_on in self.eval:
            raise ConfigError(f"{where}: select_on must not be one of the eval sets")
        out = Path(self.out)
        for template in prompts:
            for spec in ([select_on] if select_on else []) + list(self.eval):
                self.eval_config(spec, self.model, None, out / "eval", template=template)

    def distill_config(self, arm: dict[str, Any], train: Path, heldout: Path, out: Path,
                       model: str | None = None):
        """``model``: what to train on instead of the base (a rounds arm: the previous round's
        student, merged)."""
        from ssb.stages.distill.trainer import DistillConfig

        values = {"curated": str(train), "model": model or self.distill_model or self.model,
                  "out": str(out), "seed": self.seed, **self.stage_control(),
                  "report_to": self.report_to,
                  "eval_steps": self.eval_steps, **self.distill,
                  **{k: v for k, v in arm.items() if k != "name"}}
        if self.heldout:
            values.setdefault("eval_records", str(heldout))
        return stage_config(DistillConfig, values, f"arms.{arm['name']}", self.COMMAND)


# -- the train / held-out split ------------------------------------------------------------------

def split_records(curated: Path, heldout: int, seed: int, train_dir: Path,
                  heldout_dir: Path) -> tuple[int, int]:
    """Seeded by record id (not by file order): the same kept set always splits the same way.

    Written atomically; rerunning on the same curated file rewrites identical files.
    """
    rows = list(read_jsonl(curated))
    if len(rows) <= heldout:
        raise SsbError(f"{curated}: {len(rows)} kept record(s), but --heldout {heldout} would "
                       "leave nothing to train on; curate more problems or lower --heldout")

    def rank(row: dict) -> str:
        return hashlib.sha256(f"ssb-study\x00{seed}\x00{row['id']}".encode()).hexdigest()

    held_ids = {r["id"] for r in sorted(rows, key=rank)[:heldout]}
    train = [r for r in rows if r["id"] not in held_ids]
    held = [r for r in rows if r["id"] in held_ids]
    for directory, part in ((train_dir, train), (heldout_dir, held)):
        atomic_write_text(directory / "curated.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part))
    return len(train), len(held)


def copy_records(records: Path, train_dir: Path, heldout_dir: Path) -> tuple[int, int]:
    """``--records DIR``: DIR/train and DIR/heldout's curated.jsonl, byte for byte, as this
    study's data/ (every arm trains on data/train); each line is checked to be a record."""
    from ssb.records import CuratedRecord

    texts, counts = [], []
    for part in ("train", "heldout"):  # both checked before either is written
        source = records / part / "curated.jsonl"
        rows = list(read_jsonl(source))
        for i, row in enumerate(rows, 1):
            try:
                CuratedRecord.from_dict(row)
            except DataError as exc:
                raise exc.at(str(source), i) from None
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"not a curated record ({exc})", path=str(source),
                                line=i) from None
        if part == "train" and not rows:
            raise SsbError(f"{source}: no records to train on")
        texts.append(source.read_text(encoding="utf-8"))
        counts.append(len(rows))
    for target, text in zip((train_dir, heldout_dir), texts):
        atomic_write_text(target / "curated.jsonl", text)
    return counts[0], counts[1]


# -- the study -----------------------------------------------------------------------------------

@dataclass
class StudyResult:
    out: Path
    report: Path
    study: dict[str, Any] = field(default_factory=dict)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _seconds(stage_dir: Path) -> float | None:
    from ssb.stages.run import STAGE_DONE

    try:
        return json.loads((stage_dir / STAGE_DONE).read_text(encoding="utf-8"))["seconds"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def study(config: StudyConfig, *, on_event: EventCallback | None = None) -> StudyResult:
    """Run (or resume) the study in ``config.out``; returns the report and its data."""
    from ssb.stage import StageOutput

    config = config.validate()
    report = Reporter("study", on_event)
    out = Path(config.out)
    with StageOutput(out, "study", config.identity(), config.manifest(), force=True,
                     seed=config.seed) as stage:
        stage.start_work()
        train_dir, held_dir = out / "data" / "train", out / "data" / "heldout"
        if config.records is not None:
            n_train, n_held = copy_records(Path(config.records), train_dir, held_dir)
            report.log(f"[study] {n_train} training record(s), {n_held} held out, from "
                       f"{config.records} (not curated here)")
        else:
            curate_dir = out / "curate"
            run_stage("curate", config.curate_config(config.model, curate_dir), curate_dir,
                      report, rerun=config.restart)
            n_train, n_held = split_records(curate_dir / "curated.jsonl", config.heldout,
                                            config.seed, train_dir, held_dir)
            report.log(f"[study] {n_train} training record(s), {n_held} held out")

        def interim() -> None:
            data, path = write_study(out, config, n_train, n_held)
            if data["pending"]:
                report.log(f"[study] interim report {path} ({len(data['pending'])} evaluation(s) "
                           "pending)", report=str(path))

        def evaluate(spec: str, arm_name: str, adapter: Path | None,
                     template: str | None, model: str | None = None) -> None:
            eval_dir = out / "eval" / parse_eval_spec(spec)[0] / arm_name
            run_stage("eval", config.eval_config(spec, model or config.model, adapter, eval_dir,
                                                 template=template),
                      eval_dir, report, rerun=config.restart)
            interim()

        # The most important answer first: on the first eval set, the base, then each arm in
        # turn (trained or chosen, then evaluated); every later eval set after that.
        first, *later = config.eval
        evaluate(first, BASE, None, None)
        plan: list[tuple[str, Path | None, str | None, str | None]] = []
        for arm in config.arms:
            model = None
            if is_prompt_arm(arm):
                adapter, template = None, choose_prompt(config, arm, report)
            elif is_round_arm(arm):
                student = run_round_arm(config, arm, report, run_stage)
                if student is None:  # the round kept nothing: the arm stops, unevaluated
                    continue
                (model, adapter), template = student, None
            else:
                arm_dir = arm_train_dir(out, arm)
                run_stage("distill", config.distill_config(arm, train_dir, held_dir, arm_dir),
                          arm_dir, report, rerun=config.restart, launcher=config.launcher)
                adapter, template = arm_dir / "adapter", None
            plan.append((arm["name"], adapter, template, model))
            evaluate(first, arm["name"], adapter, template, model)
        for spec in later:
            evaluate(spec, BASE, None, None)
            for name, adapter, template, model in plan:
                evaluate(spec, name, adapter, template, model)
        data, path = write_study(out, config, n_train, n_held)
        from ssb.modelcard import add_study_evaluations

        add_study_evaluations(out)  # each arm's model card: its paired evaluation
        stage.finish()
        return StudyResult(out=out, report=path, study=data)


def choose_prompt(config: StudyConfig, arm: dict[str, Any], report: Reporter) -> str:
    """The prompt arm's template: the only one listed, or the one with the highest accuracy on
    the ``select_on`` dev slice (ties: the first listed).  ``DIR/select/ARM/choice.json``."""
    prompts = list(arm["prompts"])
    if len(prompts) == 1:
        return prompts[0]
    out = Path(config.out) / "select" / arm["name"]
    scores: dict[str, dict[str, Any]] = {}
    for template in prompts:
        eval_dir = out / template
        run_stage("eval", config.eval_config(arm["select_on"], config.model, None, eval_dir,
                                             template=template),
                  eval_dir, report, rerun=config.restart)
        summary = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8"))
        scores[template] = {"accuracy": summary["accuracy"]["mean"], "n": summary["n"]}
    chosen = max(prompts, key=lambda t: (scores[t]["accuracy"], -prompts.index(t)))
    atomic_write_json(out / "choice.json", {"select_on": arm["select_on"], "chosen": chosen,
                                            "candidates": scores})
    report.log(f"[study] arm {arm['name']}: {chosen} chosen on the dev slice ("
               + ", ".join(f"{t} {100 * v['accuracy']:.1f}%" for t, v in scores.items()) + ")")
    return chosen


def write_study(out: Path, config: StudyConfig, n_train: int, n_held: int
                ) -> tuple[dict[str, Any], Path]:
    """study.json and report.md over every evaluation that has completed so far."""
    data = build_study(out, config, n_train, n_held)
    atomic_write_json(out / "study.json", redact(data))
    return data, write_study_report(out, data)


def _done(stage_dir: Path) -> bool:
    from ssb.stages.run import STAGE_DONE

    return (stage_dir / STAGE_DONE).is_file()


def build_study(out: Path, config: StudyConfig, n_train: int, n_held: int) -> dict[str, Any]:
    """study.json: every number the report shows, read back from the stages' own files.

    Only completed stages are read: an evaluation still to run is listed in ``pending``
    (``DATASET:ARM``) and ``complete`` is false until none is.
    """
    from ssb.stages.evaluate import compare_runs

    table = arm_table(config.arms)
    rounds = {a["name"]: round_summary(out, table, a) for a in config.arms if is_round_arm(a)}
    # A round that kept nothing stopped: it has no student and no evaluation to wait for.
    arms = [a["name"] for a in config.arms if not rounds.get(a["name"], {}).get("stopped")]
    trained = [a for a in config.arms if not is_prompt_arm(a)]
    if config.records is not None:
        curate: dict[str, Any] = {"records": str(config.records)}
    else:
        curate_stats = json.loads((out / "curate" / "stats.json").read_text(encoding="utf-8"))
        curate = {k: curate_stats.get(k) for k in (
            "problems_seen", "kept", "skipped", "keep_rate", "rollout_accuracy",
            "teacher_attempts", "teacher_accuracy", "mean_rollout_tokens",
            "mean_teacher_tokens", "template")}
    data: dict[str, Any] = {
        "commit": _git_commit(), "config": config.manifest(),
        "curate": curate,
        "records": {"train": n_train, "heldout": n_held},
        "wall_seconds": {"curate": _seconds(out / "curate"),
                         **{f"curate:{a}": _seconds(round_dir(out, a) / "curate")
                            for a in rounds},
                         **{f"distill:{a['name']}": _seconds(arm_train_dir(out, a))
                            for a in trained}},
        "arms": {}, "prompts": {}, "rounds": rounds, "eval": {}, "pending": [],
    }
    for arm in config.arms:
        name = arm["name"]
        if is_prompt_arm(arm):
            choice = out / "select" / name / "choice.json"
            data["prompts"][name] = (
                json.loads(choice.read_text(encoding="utf-8")) if choice.exists()
                else {"chosen": arm["prompts"][0]} if len(arm["prompts"]) == 1 else {})
            for template in arm["prompts"] if len(arm["prompts"]) > 1 else []:
                data["wall_seconds"][f"select:{name}:{template}"] = _seconds(
                    out / "select" / name / template)
            continue
        arm_dir = arm_train_dir(out, arm)
        if not _done(arm_dir):
            continue
        manifest = json.loads((arm_dir / "manifest.json").read_text(encoding="utf-8"))
        held = list(read_jsonl(arm_dir / "heldout.jsonl")) if (arm_dir / "heldout.jsonl").exists() \
            else []
        data["arms"][name] = {"distill": manifest.get("config", {}),
                              "summary": manifest.get("summary", {}), "heldout": held,
                              "dir": arm_dir.relative_to(out).as_posix()}
    for spec in config.eval:
        dataset = parse_eval_spec(spec)[0]
        dirs = {a: out / "eval" / dataset / a for a in [BASE, *arms]}
        done = [a for a, d in dirs.items() if _done(d)]
        data["pending"] += [f"{dataset}:{a}" for a in dirs if a not in done]
        for a in done:
            data["wall_seconds"][f"eval:{dataset}:{a}"] = _seconds(dirs[a])
        if BASE not in done or len(done) < 2:
            continue
        evaluated = [a for a in arms if a in done]
        versus_base = compare_runs([dirs[BASE]] + [dirs[a] for a in evaluated])
        entry: dict[str, Any] = {"problems": versus_base["shared_problems"],
                                 "runs": versus_base["runs"],
                                 "vs_base": versus_base["comparisons"],
                                 "arms": evaluated,
                                 "notes": versus_base["notes"],
                                 "method": versus_base["method"]}
        for baseline in BASELINES:
            others = [a for a in evaluated if a != baseline]
            if baseline in evaluated and others:
                versus = compare_runs([dirs[baseline]] + [dirs[a] for a in others])
                entry[f"vs_{baseline}"] = versus["comparisons"]
                entry[f"vs_{baseline}_arms"] = others
        # A rounds arm against the round it continues (its primary comparison).
        for name, r in rounds.items():
            if name in evaluated and r["round_of"] in evaluated:
                versus = compare_runs([dirs[r["round_of"]], dirs[name]])
                entry.setdefault("vs_previous_round", []).append(
                    {**versus["comparisons"][0], "arm": name, "previous": r["round_of"]})
        for run, label in zip(entry["runs"], [BASE, *evaluated]):
            run["arm"] = label
        data["eval"][dataset] = entry
    data["complete"] = not data["pending"]
    return data


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _comparison_rows(comparisons: list[dict[str, Any]], baseline: str,
                     labels: list[str]) -> list[str]:
    rows = [f"| arm | vs {baseline} (pts) | 95% CI | discordant (+/-) | McNemar p | significant |",
            "|---|---|---|---|---|---|"]
    for label, c in zip(labels, comparisons):
        p = "-" if c.get("mcnemar_p") is None else f"{c['mcnemar_p']:.3g}"
        rows.append(f"| {label} | {100 * c['diff']:+.1f} | {100 * c['ci_low']:+.1f} to "
                    f"{100 * c['ci_high']:+.1f} | {c.get('b_only', '-')}/"
                    f"{c.get('a_only', '-')} | {p} | {'yes' if c['significant'] else 'no'} |")
    return rows


def write_study_report(out: Path, data: dict[str, Any]) -> Path:
    """report.md and charts.json from study.json's data."""
    from ssb.stages.report import CHARTS

    arms = list(data["arms"])
    c = data["curate"]
    lines = ["# SSB study", "",
             f"Commit `{data.get('commit') or 'unknown'}`; config in `study.json`.", ""]
    if data.get("pending"):
        lines += [f"**In progress**: {len(data['pending'])} evaluation(s) still to run "
                  f"({', '.join(data['pending'])}); this report covers those that have "
                  "finished.", ""]
    lines += ["## Curation", ""]
    if "records" in c:
        lines.append(f"- not curated by this study: the records in `{c['records']}`")
    else:
        lines.append(f"- problems {c['problems_seen']}, kept {c['kept']} (keep rate "
                     f"{_pct(c['keep_rate'])}); rollout accuracy {_pct(c['rollout_accuracy'])}; "
                     f"hinted teacher verified {_pct(c['teacher_accuracy'])} of "
                     f"{c['teacher_attempts']} attempts; template `{c.get('template')}`")
    lines += [f"- records: {data['records']['train']} train, {data['records']['heldout']} "
              "held out (never trained on)", ""]
    charts: list[dict[str, Any]] = []
    for name, prompt in data.get("prompts", {}).items():
        cands = prompt.get("candidates") or {}
        lines += [f"## Prompt arm `{name}`", "",
                  f"- instruction: `{prompt.get('chosen') or 'not chosen yet'}`"
                  + (f", chosen on `{prompt['select_on']}` by dev accuracy: "
                     + ", ".join(f"`{t}` {_pct(v['accuracy'])} of {v['n']}"
                                 for t, v in cands.items()) if cands else ""), ""]
    for name, r in data.get("rounds", {}).items():
        rc = r.get("curate") or {}
        lines += [f"## Rounds arm `{name}` (round {r['round']}, continues `{r['round_of']}`)", ""]
        if rc:
            lines.append(f"- curated by the round-{r['round'] - 1} student: problems "
                         f"{rc['problems_seen']}, kept {rc['kept']} (keep rate "
                         f"{_pct(rc['keep_rate'])}); rollout accuracy "
                         f"{_pct(rc['rollout_accuracy'])}; hinted teacher verified "
                         f"{_pct(rc['teacher_accuracy'])} of {rc['teacher_attempts']} attempts"
                         + (f"; skipped {rc['skipped']}" if rc.get("skipped") else ""))
        if r.get("stopped"):
            lines.append(f"- **stopped**: {r['stopped']}; it trained nothing and is not "
                         "evaluated")
        if r.get("records"):
            lines.append(f"- records: {r['records'].get('train', 0)} train, "
                         f"{r['records'].get('heldout', 0)} held out")
        lines.append("")
    lines += ["## Training (held-out records)", "",
              "| arm | loss | teacher | steps | held-out KL start → end | held-out CE start → end |",
              "|---|---|---|---|---|---|"]
    for name in arms:
        arm = data["arms"][name]  # trained arms whose distill is complete
        held = arm["heldout"]
        kl = (f"{held[0]['kl']:.4f} → {held[-1]['kl']:.4f}" if held else "-")
        ce = (f"{held[0]['ce']:.4f} → {held[-1]['ce']:.4f}" if held else "-")
        lines.append(f"| {name} | `{arm['distill'].get('loss')}` | {arm['distill'].get('teacher')} "
                     f"| {arm['summary'].get('steps', '-')} | {kl} | {ce} |")
    lines += ["", "![held-out curves](plots/heldout-curves.png)", ""]
    charts.append({"kind": "arm_curves", "path": "plots/heldout-curves.png",
                   "arms": [{"name": n, "heldout": str(out / data["arms"][n]["dir"] /
                                                       "heldout.jsonl")} for n in arms]})
    for dataset, entry in data["eval"].items():
        lines += [f"## Eval: {dataset} ({entry['problems']} paired problems)", "",
                  "| arm | accuracy | 95% CI | truncated at the budget | mean reply (tokens) |",
                  "|---|---|---|---|---|"]
        for run in entry["runs"]:
            tokens = run.get("mean_response_tokens")
            lines.append(f"| {run['arm']} | {_pct(run['accuracy'])} | {_pct(run['ci_low'])} – "
                         f"{_pct(run['ci_high'])} | {_pct(run.get('truncation_rate'))} | "
                         f"{'-' if tokens is None else f'{tokens:.0f}'} |")
        lines += [""] + _comparison_rows(entry["vs_base"], BASE, entry["arms"]) + [""]
        for baseline in BASELINES:
            if f"vs_{baseline}" in entry:
                lines += _comparison_rows(entry[f"vs_{baseline}"], baseline,
                                          entry[f"vs_{baseline}_arms"])
                lines.append("")
        for c in entry.get("vs_previous_round", []):
            lines += _comparison_rows([c], c["previous"], [c["arm"]]) + [""]
        for note in entry["notes"]:
            lines.append(f"> note: {note}")
        png = f"plots/accuracy-{dataset}.png"
        lines += [f"![accuracy per arm on {dataset}]({png})", "",
                  f"Method: {entry['method']}.", ""]
        charts.append({"kind": "arm_accuracy", "path": png, "title": dataset,
                       "arms": [{"name": r["arm"], "accuracy": r["accuracy"],
                                 "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
                                for r in entry["runs"]]})
    lines += ["## Wall time", "",
              "Seconds of the run that completed each stage: a stage resumed after a stop also "
              "ran before it, and that time is not counted here.", "",
              "| stage | seconds |", "|---|---|"]
    for key, seconds in data["wall_seconds"].items():
        lines.append(f"| {key} | {'-' if seconds is None else f'{seconds:.0f}'} |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    atomic_write_text(out / CHARTS, json.dumps(charts, indent=2) + "\n")
    return out / "report.md"


__all__ = ["StudyConfig", "StudyResult", "study", "split_records", "copy_records", "build_study",
           "write_study", "choose_prompt", "is_prompt_arm", "is_round_arm", "DEFAULT_ARMS"]
