"""A study's **rounds arm**: the next bootstrapping round of one of its trained arms.

``[[arms]] name = "ssb-r2", round_of = "ssb", curate = {source = "..."}`` continues the arm
``ssb`` (or another rounds arm, for round 3 and later) exactly as ``ssb run --rounds`` does:

1. **curate** new problems (the study's ``[curate]`` settings, with the arm's ``curate`` table on
   top: typically other problems) with the round-(r-1) student as the model: the merged HF
   directory on backends that load one (transformers, vllm), the base model plus the rounds'
   LoRAs folded into one adapter on llama.cpp (:func:`ssb.stages.run.student_on`);
2. **split** its kept records as the study splits its own (``heldout`` of them held out);
3. **distill** a LoRA on the round-(r-1) student merged into the weights (fp32 on a CPU), that
   model being the teacher, with the options of the arm it continues (the same recipe) unless
   the arm gives its own;
4. the study **evaluates** the round-r student (merged, or base + folded adapters) on every eval
   set beside the other arms, and the report pairs it against the arm it continues.

Everything lives in ``DIR/rounds/NAME/`` (``curate``, ``data``, ``merged`` = the round-(r-1)
student merged at full precision (fp32 on a CPU), ``distill``, ``curator`` / ``student`` = folded
adapters for llama.cpp, ``student-merged`` for backends that load HF directories); each step is a
resumable stage, so a study killed anywhere in a round resumes without repeating work.

A round that keeps too few problems to hold ``heldout`` out and train on the rest stops there
(``stopped.json`` says why): the arm, and any round after it, is reported as stopped and is not
evaluated.  If the student a round continues changes (the earlier arm retrained), every stage of
the round sees its inputs changed and runs afresh, the old outputs moved aside
(:func:`ssb.stages.run.run_stage`, :func:`ssb.models.merge_adapter`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ssb.journal import atomic_write_json, read_jsonl
from ssb.options import ConfigError

# Keys of a rounds arm that are not `ssb distill` options.
ROUND_KEYS = ("name", "round_of", "curate")
# What a rounds arm sets itself: the served student (curate) and the merged model it trains on.
OWN_CURATE_KEYS = ("out", "model", "adapter", "backend", "backend_options")
OWN_DISTILL_KEYS = ("out", "model", "curated", "eval_records", "teacher_store")
STOPPED = "stopped.json"


def is_round_arm(arm: dict[str, Any]) -> bool:
    return "round_of" in arm


def round_dir(out: Path, name: str) -> Path:
    return Path(out) / "rounds" / name


def train_dir(out: Path, arm: dict[str, Any]) -> Path:
    """Where an arm's ``ssb distill`` writes (its adapter is ``adapter/`` under it)."""
    if is_round_arm(arm):
        return round_dir(out, arm["name"]) / "distill"
    return Path(out) / "arms" / arm["name"]


def arm_table(arms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in arms}


def adapter_chain(out: Path, arms: dict[str, dict[str, Any]], name: str) -> list[Path]:
    """The adapters, round 1 first, whose sum on the base model is arm ``name``'s student."""
    arm = arms[name]
    own = train_dir(out, arm) / "adapter"
    return (adapter_chain(out, arms, arm["round_of"]) + [own]) if is_round_arm(arm) else [own]


def distill_options(arms: dict[str, dict[str, Any]], arm: dict[str, Any]) -> dict[str, Any]:
    """The ``ssb distill`` options of a rounds arm: those of the arm it continues (round 1's,
    followed back), overridden by its own."""
    prev = arms[arm["round_of"]]
    inherited = distill_options(arms, prev) if is_round_arm(prev) else \
        {k: v for k, v in prev.items() if k != "name"}
    return {**inherited, **{k: v for k, v in arm.items() if k not in ROUND_KEYS}}


def check_round_arm(config: Any, arm: dict[str, Any], earlier: dict[str, dict[str, Any]]) -> None:
    """Refuse a rounds arm whose predecessor is not an earlier trained arm, or whose curate
    table or distill options are not valid (checked now, not hours into the study)."""
    from ssb.stages.study import is_prompt_arm

    where = f"[[arms]] {arm['name']!r}"
    prev = arm.get("round_of")
    if not isinstance(prev, str) or prev not in earlier:
        raise ConfigError(f"{where}: round_of must name a trained arm listed before it "
                          f"(listed before: {sorted(earlier) or 'none'})")
    if is_prompt_arm(earlier[prev]):
        raise ConfigError(f"{where}: round_of {prev!r} is a prompt arm; it trains nothing to "
                          "continue")
    from ssb.plugins import get_registry
    from ssb.stages.run import serves_students

    if serves_students(get_registry().backend(config.backend)) is None:
        raise ConfigError(f"{where}: backend {config.backend!r} can serve neither a merged "
                          "model nor LoRA adapters, so it cannot curate with a student")
    from ssb.options import _table_keys
    from ssb.stages.curate import CurateConfig

    table = arm.get("curate", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: curate must be a table of `ssb curate` options")
    # In field names (`top-k`, `filter`: a flag's spelling), as run_round_arm passes them on.
    arm["curate"] = table = _table_keys(CurateConfig, table, f"{where} curate")
    own = sorted(set(OWN_CURATE_KEYS) & set(table))
    if own:
        raise ConfigError(f"{where}: a round curates on the study's backend with the round-"
                          f"(r-1) student, which it sets itself; remove {own} from curate")
    arms = {**earlier, arm["name"]: arm}
    options = distill_options(arms, arm)
    own = sorted(set(OWN_DISTILL_KEYS) & {k.replace("-", "_") for k in options})
    if own:
        raise ConfigError(f"{where}: a round trains on the round-(r-1) student merged, taught by "
                          f"it, on its own records; remove {own} (here or in the arm it "
                          "continues)")
    if options.get("teacher") == "offline":
        raise ConfigError(f"{where}: a round's teacher is the round-(r-1) student, online; the "
                          "arm it continues uses teacher = offline")
    root = round_dir(config.out, arm["name"])
    config.curate_config(config.model, root / "curate", overrides=table)
    config.distill_config({"name": arm["name"], **options},
                          root / "data" / "train", root / "data" / "heldout", root / "distill")


def _stop(root: Path, name: str, reason: str, report: Any) -> None:
    atomic_write_json(root / STOPPED, {"reason": reason})
    report.log(f"[study] arm {name}: {reason}; the round stops here (not evaluated)")


def run_round_arm(config: Any, arm: dict[str, Any], report: Any,
                  run_stage: Callable[..., None]) -> tuple[str, Path | None] | None:
    """Curate, split and distill round r of ``arm``; returns the (model, adapter) that serve
    its student for evaluation, or None when the round stops (too few kept, or the round it
    continues stopped)."""
    from ssb.export import ensure_folded_adapter
    from ssb.models import merge_adapter
    from ssb.plugins import get_registry
    from ssb.stages.curate import CURATED
    from ssb.stages.run import serves_students, student_on
    from ssb.stages.study import split_records

    out, name = Path(config.out), arm["name"]
    arms = arm_table(config.arms)
    root = round_dir(out, name)
    prev = arms[arm["round_of"]]
    if is_round_arm(prev) and (round_dir(out, prev["name"]) / STOPPED).exists():
        root.mkdir(parents=True, exist_ok=True)
        _stop(root, name, f"the round it continues ({prev['name']}) stopped", report)
        return None
    chain = adapter_chain(out, arms, arm["round_of"])
    (root / STOPPED).unlink(missing_ok=True)  # decided again below
    base = config.model
    distill_base = config.distill_model or config.model
    # The round-(r-1) student at full precision: the merged model of the arm it continues (or
    # the base) plus that arm's LoRA.
    prev_base = str(round_dir(out, prev["name"]) / "merged") if is_round_arm(prev) \
        else distill_base
    merged = merge_adapter(prev_base, chain[-1], root / "merged")
    factory = get_registry().backend(config.backend)
    if serves_students(factory) == "merged":
        model, adapter = str(merged), None
    else:
        curator = ensure_folded_adapter(chain, root / "curator")
        model, adapter = student_on(factory, base, str(merged), curator)
    curate_dir = root / "curate"
    run_stage("curate", config.curate_config(model, curate_dir, overrides={
        **arm.get("curate", {}), "adapter": adapter}), curate_dir, report,
        rerun=config.restart)
    kept = sum(1 for _ in read_jsonl(curate_dir / CURATED))
    if kept <= config.heldout:
        _stop(root, name, f"the round-{len(chain)} student kept {kept} problem(s), too few to "
              f"hold {config.heldout} out and train on the rest", report)
        return None
    data = root / "data"
    n_train, n_held = split_records(curate_dir / CURATED, config.heldout, config.seed,
                                    data / "train", data / "heldout")
    report.log(f"[study] arm {name}: round {len(chain) + 1}, {n_train} training record(s), "
               f"{n_held} held out, curated by the round-{len(chain)} student")
    distill_dir = root / "distill"
    run_stage("distill", config.distill_config(
        {"name": name, **distill_options(arms, arm)}, data / "train", data / "heldout",
        distill_dir, model=str(merged)), distill_dir, report, rerun=config.restart,
        launcher=config.launcher)
    if serves_students(factory) == "merged":
        return str(merge_adapter(str(merged), distill_dir / "adapter", root / "student-merged")), \
            None
    return base, ensure_folded_adapter(chain + [distill_dir / "adapter"], root / "student")


def round_summary(out: Path, arms: dict[str, dict[str, Any]], arm: dict[str, Any]
                  ) -> dict[str, Any]:
    """study.json's entry for a rounds arm: what curated it and its curation statistics."""
    root = round_dir(out, arm["name"])
    entry: dict[str, Any] = {"round_of": arm["round_of"],
                             "round": len(adapter_chain(out, arms, arm["name"])),
                             "curate_options": arm.get("curate", {})}
    stats_path = root / "curate" / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        entry["curate"] = {k: stats.get(k) for k in (
            "problems_seen", "kept", "keep_rate", "rollout_accuracy", "teacher_attempts",
            "teacher_accuracy", "mean_rollout_tokens", "mean_teacher_tokens", "skipped",
            "complete")}
    if (root / STOPPED).exists():
        entry["stopped"] = json.loads((root / STOPPED).read_text(encoding="utf-8"))["reason"]
    for part in ("train", "heldout"):
        path = root / "data" / part / "curated.jsonl"
        if path.exists():
            entry.setdefault("records", {})[part] = sum(1 for _ in read_jsonl(path))
    return entry


__all__ = ["adapter_chain", "check_round_arm", "distill_options", "is_round_arm",
           "round_dir", "round_summary", "run_round_arm", "train_dir"]
