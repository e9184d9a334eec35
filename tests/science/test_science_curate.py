"""Chance-aware curation for multiple choice (min_correct), curate replayed on ARC dev problems
with scripted replies, and `ssb eval` on ARC with the tiny model (plumbing, not accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssb.records import Rollout
from ssb.stages.curate import (ALL_CORRECT, ALL_WRONG, FEW_CORRECT, CurateConfig, select_pair,
                               summarize)


def _rollouts(correct: list[bool]) -> list[Rollout]:
    return [Rollout(text=f"r{i}", num_tokens=3, finish_reason="stop",
                    extracted="C" if c else "A", correct=c) for i, c in enumerate(correct)]


def test_select_pair_requires_min_correct():
    one = _rollouts([True, False, False, False])
    assert select_pair(one, 0, "p").status == "selected"  # the rule every domain had
    few = select_pair(one, 0, "p", min_correct=2)
    assert few.status == FEW_CORRECT and few.correct_index is None
    assert few.answer_counts == [{"answer": "A", "count": 3}]
    two = _rollouts([False, True, False, True])
    assert select_pair(two, 0, "p", min_correct=2) == select_pair(two, 0, "p")
    assert select_pair(_rollouts([True] * 4), 0, "p", min_correct=2).status == ALL_CORRECT
    assert select_pair(_rollouts([False] * 4), 0, "p", min_correct=2).status == ALL_WRONG


def test_summarize_counts_few_correct_only_when_it_occurs():
    plain = summarize([{"id": "a", "status": ALL_WRONG}])
    assert set(plain["skipped"]) == {"all_correct", "all_wrong", "teacher_wrong", "errors"}
    few = summarize([{"id": "a", "status": FEW_CORRECT}, {"id": "b", "status": FEW_CORRECT}])
    assert few["skipped"]["few_correct"] == 2 and few["kept"] == 0


def _config(tmp_path, domain, **kw) -> CurateConfig:
    return CurateConfig(domain=domain, backend="transformers", model="m", out=tmp_path / "o",
                        dataset="arc" if domain == "science" else None, **kw)


def test_min_correct_comes_from_the_domain_unless_given(tmp_path):
    from ssb.errors import SsbError

    assert _config(tmp_path, "science").resolved_min_correct() == 2
    assert _config(tmp_path, "gsm8k").resolved_min_correct() == 1
    assert _config(tmp_path, "science", min_correct=1).resolved_min_correct() == 1
    # identity: the rule in force, None for 1 (what a run made before the option recorded)
    assert _config(tmp_path, "gsm8k").identity()["min_correct"] is None
    assert _config(tmp_path, "science").identity()["min_correct"] == 2
    assert _config(tmp_path, "science", min_correct=1).identity()["min_correct"] is None
    bad = _config(tmp_path, "science", min_correct=4)
    with pytest.raises(SsbError, match="--min-correct 4 leaves no room"):
        bad.check()


# -- curate replayed on three ARC-Challenge dev problems ------------------------------------------

# Problem 0 (gold D): one right rollout of four; problem 1 (gold C): two right; problem 2 (gold
# D): none right.  Every right rollout of a problem has the same text, and every wrong one, so the
# hinted prompt does not depend on which of them the seeded selection picks.
SCRIPT = {0: (["D", "A", "A", "A"], "D"), 1: (["C", "C", "A", "A"], "C"), 2: (["A"] * 4, None)}


def _recording(shared_data: Path, path: Path) -> Path:
    from ssb.plugins import get_registry

    template = get_registry().template("science")
    problems = get_registry().dataset("arc-challenge").load(
        str(shared_data / "arc"), "validation").problems[:3]
    lines = []
    for i, p in enumerate(problems):
        letters, gold = SCRIPT[i]
        assert gold is None or json.loads(p.gold)["answer"] == gold
        texts = [f"Thinking about it, the answer is \\boxed{{{x}}}." for x in letters]
        lines.append({"messages": template.student_messages(p.question),
                      "params": {"temperature": 0.8},
                      "completions": [{"text": t, "num_tokens": 9, "finish_reason": "stop"}
                                      for t in texts]})
        if gold is not None:
            right = texts[letters.index(gold)]
            wrong = texts[letters.index("A")]
            lines.append({"messages": template.teacher_messages(p.question, right, wrong, ""),
                          "params": {"temperature": 0.4},
                          "completions": [{"text": f"Step by step ... so \\boxed{{{gold}}}",
                                           "num_tokens": 12, "finish_reason": "stop"}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def _curate(ssb_cli, shared_data, recording, out, *extra):
    return ssb_cli("curate", "--domain", "science", "--dataset", "arc-challenge",
                   "--source", str(shared_data / "arc"), "--split", "dev", "--limit", "3",
                   "--backend", "replay", "--model", str(recording), "--no-progress",
                   "--out", str(out), *extra)


def test_curate_keeps_only_problems_with_two_right_rollouts(replay_plugin, shared_data,
                                                            tmp_path, ssb_cli):
    recording = _recording(shared_data, tmp_path / "rec.jsonl")
    out = tmp_path / "default"
    code, _, err = _curate(ssb_cli, shared_data, recording, out)
    assert code == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] == 1 and stats["skipped"]["few_correct"] == 1
    assert stats["skipped"]["all_wrong"] == 1 and stats["teacher_attempts"] == 1
    (record,) = [json.loads(x) for x in (out / "curated.jsonl").read_text().splitlines()]
    assert record["rollout_correct"] == [True, True, False, False]
    assert record["template"] == "science-tutor@1" and record["domain"] == "science"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["identity"]["min_correct"] == 2

    # --min-correct 1 is the plain rule: the lucky-looking problem reaches the teacher too
    out1 = tmp_path / "one"
    code, _, err = _curate(ssb_cli, shared_data, recording, out1, "--min-correct", "1")
    assert code == 0, err
    stats1 = json.loads((out1 / "stats.json").read_text())
    assert stats1["kept"] == 2 and "few_correct" not in stats1["skipped"]
    # a changed rule is a changed config: refused on resume
    code, _, err = _curate(ssb_cli, shared_data, recording, out, "--min-correct", "1")
    assert code == 2 and "min_correct" in err


def test_eval_on_arc_with_the_tiny_model(tiny_model_dir, shared_data, tmp_path, ssb_cli):
    out = tmp_path / "eval"
    code, _, err = ssb_cli("eval", "--dataset", "arc-challenge", "--split", "dev",
                           "--source", str(shared_data / "arc"), "--limit", "3",
                           "--backend", "transformers", "--model", str(tiny_model_dir),
                           "--max-tokens", "8", "--no-progress", "--out", str(out))
    assert code == 0, err
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["id"].startswith("arc-challenge/") for r in rows)
    assert all(json.loads(r["gold"])["choices"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["template"] == "science-tutor@1"


def test_arc_dev_rule_reads_a_real_min_correct_1_journal(replay_plugin, shared_data, tmp_path,
                                                          ssb_cli):
    """scripts/arc_dev_rule.py: the two rules' numbers from one --min-correct 1 run, and the
    choice the README fixes before the ARC run (keep 2 unless it keeps too few or its teacher
    is less accurate)."""
    import subprocess
    import sys

    recording = _recording(shared_data, tmp_path / "rec.jsonl")
    out = tmp_path / "one"
    code, _, err = _curate(ssb_cli, shared_data, recording, out, "--min-correct", "1")
    assert code == 0, err
    script = Path(__file__).resolve().parents[2] / "scripts" / "arc_dev_rule.py"

    def rule(*extra):
        proc = subprocess.run([sys.executable, str(script), str(out), *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((out / "dev-rule.json").read_text()) == json.loads(proc.stdout)
        return json.loads(proc.stdout)

    result = rule("--need", "1", "--pool", "3")
    one, two = result["min_correct"]["1"], result["min_correct"]["2"]
    assert (one["seen"], one["to_teacher"], one["kept"]) == (3, 2, 2)
    assert (two["seen"], two["to_teacher"], two["kept"]) == (3, 1, 1)
    assert two["teacher_accuracy"] == one["teacher_accuracy"] == 1.0
    assert result["choice"] == 2
    # min_correct 2 keeps 1 of 3: too few when 2 records are needed from 3 questions
    assert rule("--need", "2", "--pool", "3")["choice"] == 1
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no curate journal" in missing.stderr


def test_arc_dev_rule_falls_back_when_two_right_rollouts_pick_a_worse_teacher():
    """The rule's second branch: min_correct 2 keeps enough, but its teacher is less accurate."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "arc_dev_rule.py"
    spec = importlib.util.spec_from_file_location("arc_dev_rule", path)
    rule = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rule)
    numbers = {1: {"seen": 200, "keep_rate": 0.40, "teacher_accuracy": 0.70},
               2: {"seen": 200, "keep_rate": 0.30, "teacher_accuracy": 0.65}}
    choice, why = rule.choose(numbers, need=116, pool=869)
    assert choice == 1 and "teacher accuracy 0.650 is below" in why
    numbers[2]["teacher_accuracy"] = 0.70  # a tie keeps 2
    assert rule.choose(numbers, need=116, pool=869)[0] == 2
