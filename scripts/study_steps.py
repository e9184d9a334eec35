"""Run chosen evaluations of a study now, exactly as ``ssb study`` runs them, in the order given.

    python scripts/study_steps.py CONFIG OUT STEP [STEP ...]

A STEP is ``DATASET:ARM`` (evaluate ARM on that eval set) or ``curate`` (curate and split the
study's records, as the study does; nothing if ``records =`` gives them or they are restored), e.g.
``studies/gsm8k.toml runs/study-gsm8k-vllm gsm8k:prompt math500:base math500:ssb``.

``ssb study`` walks its plan in one fixed order (each arm trained, then evaluated on the first
eval set; then every later eval set).  On a machine that lasts one session, and after
``scripts/study_restore.py`` has put back what is committed, that order would spend hours
retraining arms before the evaluations that need no training.  This script takes the study's own
configs (``StudyConfig.eval_config`` / ``distill_config``, the same stage directories, the same
``run_stage`` with its markers), so what it produces is what the study would have produced and a
later ``ssb study`` or a later call of this script skips it:

- ``base``: the base model;
- a prompt arm: its dev choice (``select/ARM/choice.json``; made by the study's own
  ``choose_prompt`` if absent);
- a trained arm: its adapter, retrained first if it is missing (a fresh machine: adapters are
  not committed).  A restored arm directory (its curves and marker, no adapter) is moved aside to
  ``arms/ARM.committed`` and the arm is retrained with the same config and seed; the script then
  says whether the new adapter's fingerprint is the one the committed evaluations recorded (if
  not, those evaluations are stale and ``run_stage`` redoes them when they are asked for).

A base or prompt evaluation needs no records; a trained arm does.  After every step the interim
``study.json`` / ``report.md`` are rewritten (once there are records).  Run it from the
study's pinned worktree with its environment (``scripts/run_study_steps.sh`` does).  Rounds arms
are not supported here (``ssb study`` runs them).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path


CURATE = "curate"  # the step that curates (and splits) the study's records


def _count(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    from ssb.events import Reporter
    from ssb.export import adapter_fingerprint
    from ssb.options import resolve
    from ssb.stages.run import STAGE_DONE, parse_eval_spec, run_stage
    from ssb.stages.study import (BASE, StudyConfig, choose_prompt, copy_records, is_prompt_arm,
                                  is_round_arm, split_records, write_study)

    logging.basicConfig(format="%(message)s", level=logging.INFO)
    config_file, out_arg, steps = argv[0], argv[1], argv[2:]
    config = resolve(StudyConfig, file=config_file, flags={"out": Path(out_arg)},
                     nested=StudyConfig.NESTED).validate()
    out = Path(config.out)
    specs = {parse_eval_spec(s)[0]: s for s in config.eval}
    arms = {a["name"]: a for a in config.arms}
    for step in steps:  # every step checked before any runs
        if step == CURATE:
            continue
        dataset, _, arm = step.partition(":")
        if dataset not in specs or (arm != BASE and arm not in arms):
            print(f"study_steps: {step!r}: want {CURATE!r} or DATASET:ARM with DATASET in "
                  f"{sorted(specs)} and ARM in {[BASE, *arms]}", file=sys.stderr)
            return 2
        if arm in arms and is_round_arm(arms[arm]):
            print(f"study_steps: {step!r}: a rounds arm; run `ssb study`", file=sys.stderr)
            return 2
    train_dir, held_dir = out / "data" / "train", out / "data" / "heldout"
    if config.records is not None and not (train_dir / "curated.jsonl").is_file():
        copy_records(Path(config.records), train_dir, held_dir)  # as the study does
    report = Reporter("study", None)

    def say(message: str) -> None:
        print(f"study_steps: {time.strftime('%H:%M:%S', time.gmtime())} {message}",
              file=sys.stderr, flush=True)

    def have_records() -> bool:
        return (train_dir / "curated.jsonl").is_file()

    def interim() -> None:
        """The study's interim report, once there are records to report (a study that has not
        curated yet can still evaluate its base)."""
        if not have_records() or (config.records is None
                                  and not (out / "curate" / "stats.json").is_file()):
            return
        n_train = _count(train_dir / "curated.jsonl")
        n_held = _count(held_dir / "curated.jsonl") if (held_dir / "curated.jsonl").is_file() \
            else 0
        data, path = write_study(out, config, n_train, n_held)
        say(f"interim report {path} ({len(data['pending'])} evaluation(s) pending)")
        from ssb.commands.charts import render_charts  # its charts, as `ssb study` draws them

        render_charts(out)

    for step in steps:
        if step == CURATE:
            if have_records():
                say("curate: the records are here (data/): nothing to curate")
                continue
            curate_dir = out / "curate"
            say(f"curate: into {curate_dir}")
            run_stage("curate", config.curate_config(config.model, curate_dir), curate_dir,
                      report)
            n_train, n_held = split_records(curate_dir / "curated.jsonl", config.heldout,
                                            config.seed, train_dir, held_dir)
            say(f"curate: done: {n_train} training record(s), {n_held} held out")
            interim()
            continue
        dataset, _, name = step.partition(":")
        adapter = template = None
        if name != BASE and is_prompt_arm(arms[name]):
            choice = out / "select" / name / "choice.json"
            template = (json.loads(choice.read_text(encoding="utf-8"))["chosen"]
                        if choice.is_file() else choose_prompt(config, arms[name], report))
            say(f"{step}: instruction {template}")
        elif name != BASE:
            if not have_records():
                say(f"{step}: no records to train on ({train_dir}/curated.jsonl): run the "
                    f"{CURATE!r} step first or restore the snapshot (scripts/study_restore.py)")
                return 2
            arm_dir = out / "arms" / name
            adapter = arm_dir / "adapter"
            if not adapter.is_dir():
                if (arm_dir / STAGE_DONE).exists():  # restored: curves and marker, no adapter
                    kept = arm_dir.with_name(f"{name}.committed")
                    if kept.exists():
                        kept = arm_dir.with_name(f"{name}.committed-{int(time.time())}")
                    os.replace(arm_dir, kept)
                    say(f"{step}: the adapter is not here; the committed curves moved to {kept}")
                say(f"{step}: training {name} (distill, seed {config.seed})")
                run_stage("distill", config.distill_config(arms[name], train_dir, held_dir,
                                                           arm_dir),
                          arm_dir, report, launcher=config.launcher)
            _compare_fingerprint(out, name, adapter, adapter_fingerprint, say)
        eval_dir = out / "eval" / dataset / name
        say(f"{step}: evaluating into {eval_dir}")
        ran = run_stage("eval", config.eval_config(specs[dataset], config.model, adapter, eval_dir,
                                                   template=template), eval_dir, report)
        summary = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8"))
        say(f"{step}: {'done' if ran else 'already complete'}: "
            f"{100 * summary['accuracy']['mean']:.1f}% of {summary['n']}")
        interim()
    return 0


def _compare_fingerprint(out: Path, name: str, adapter: Path, fingerprint, say) -> None:
    """Whether ``adapter`` is the one this arm's finished evaluations were made with.

    The recorded fingerprint is sha256 over the adapter's config and weights.  peft wrote the
    config's ``target_modules`` in a set's order, which differs between processes (fixed in
    ``ssb.export.canonicalize_adapter_config`` since): if the fingerprint differs, every order of
    those modules is tried, so "the same weights, the modules listed in another order" is told
    apart from "other weights"; in the first case the config is rewritten in the recorded order
    (the same JSON object), which makes the retrained adapter the evaluated one byte for byte."""
    key = f"adapter:{adapter}"
    for marker in sorted(out.glob(f"eval/*/{name}/.ssb-run-stage.json")):
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("inputs", {}).get(key)
        if recorded is None:
            continue
        if recorded == fingerprint(adapter):
            say(f"{name}: adapter IS the one {marker.parent} was evaluated with, byte for byte "
                "(its result stands)")
        elif (text := _same_weights_other_order(adapter, recorded, fingerprint)) is not None:
            # The evaluated adapter's own bytes: its config in the recorded order (the same
            # JSON object), so the markers, caches and results that name it stand.
            tmp = adapter / "adapter_config.json.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, adapter / "adapter_config.json")
            say(f"{name}: adapter has the same weights as the one {marker.parent} was evaluated "
                "with, bit for bit; its config listed the target modules in another order and "
                "is rewritten in the recorded one, so it IS that adapter byte for byte "
                f"(fingerprint {'matches' if fingerprint(adapter) == recorded else 'DIFFERS'})")
        else:
            say(f"{name}: adapter is NOT the one {marker.parent} was evaluated with (other "
                "weights): that evaluation is stale and is redone when asked for")


def _same_weights_other_order(adapter: Path, recorded: str, fingerprint) -> str | None:
    """The config text, in the module order whose fingerprint is ``recorded``; None if none."""
    import hashlib
    import itertools
    import re

    config = (adapter / "adapter_config.json").read_text(encoding="utf-8")
    weights = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()

    def digest(text: str) -> str:  # ssb.export.adapter_fingerprint, from the config's text
        h = hashlib.sha256()
        for part, sha in (("adapter_config.json", hashlib.sha256(text.encode()).hexdigest()),
                          ("adapter_model.safetensors", weights)):
            h.update(part.encode())
            h.update(sha.encode())
        return h.hexdigest()

    if digest(config) != fingerprint(adapter):  # not the fingerprint this code knows
        return None
    m = re.search(r'("target_modules":\s*\[)(\s*)(.*?)(\s*\])', config, re.DOTALL)
    if m is None:
        return None
    items = json.loads(f"[{m.group(3)}]")
    if len(items) > 8:
        return None
    for order in itertools.permutations(items):
        body = ("," + m.group(2)).join(json.dumps(i) for i in order)
        text = config[:m.start()] + m.group(1) + m.group(2) + body + m.group(4) + \
            config[m.end():]
        if digest(text) == recorded:
            return text
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
