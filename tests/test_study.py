"""`ssb study` scaled down on the tiny model: two arms on one curated set, a paired eval, a
SIGKILL in the middle, and a report whose numbers are checked against the per-arm results."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def write_study(path: Path, model: Path, epochs: int) -> Path:
    path.write_text(f"""
domain = "coinflip"
backend = "transformers"
model = "{model}"
seed = 0
heldout = 1
eval-steps = 2
eval = ["coinflip", "coinflip-again"]
eval-limit = 8

[curate]
filters = {{ n = 96 }}  # the tiny model rarely ends a hinted solution on its own: curate enough
rollouts = 4
max-tokens = 12
batch-size = 4

[distill]
epochs = {epochs}
batch-size = 2
lora-r = 4
lora-alpha = 8
max-length = 256
save-steps = 1
logging-steps = 1

[evaluate]
max-tokens = 12

[[arms]]
name = "ssb"
loss = "kl=1,ce=0"
temperature = 2.0

[[arms]]
name = "sft"
loss = "ce=1"
teacher = "none"

[[arms]]
name = "prompt"            # training-free: the instruction with the best dev accuracy
prompts = ["coinflip@1", "terse@1"]
select-on = "coinflip?split=dev&limit=4"
""")
    return path


INTERIM = """
import json, sys
from pathlib import Path
from ssb.options import resolve
from ssb.stages.study import StudyConfig, write_study

out, cfg = Path(sys.argv[1]), Path(sys.argv[2])
config = resolve(StudyConfig, file=cfg, flags={"out": str(out)}, nested=StudyConfig.NESTED)
full = json.loads((out / "study.json").read_text())
write_study(out, config, full["records"]["train"], full["records"]["heldout"])
"""


def ssb_study(args: list[str], plugin_path: Path, **kwargs) -> subprocess.Popen:
    from conftest import ssb_subprocess

    return ssb_subprocess("study", args, plugin_path, **kwargs)


def _flags(path: Path) -> dict[str, bool]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: r["samples"][0]["correct"] for r in rows}


@pytest.mark.slow
def test_study_two_arms_killed_resumed_and_reported(tmp_path, tiny_model_dir, coinflip_path):
    out = tmp_path / "study"
    cfg = write_study(tmp_path / "study.toml", tiny_model_dir, epochs=6)
    proc = ssb_study(["--config", str(cfg), "--out", str(out)], coinflip_path)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if list((out / "arms" / "ssb").glob("checkpoints/checkpoint-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    curated = out / "curate" / "curated.jsonl"
    mtime = curated.stat().st_mtime_ns

    again = ssb_study(["--config", str(cfg), "--out", str(out)], coinflip_path)
    stdout, stderr = again.communicate(timeout=1500)
    assert again.returncode == 0, stderr[-4000:]
    assert "[skip] curate" in stderr and curated.stat().st_mtime_ns == mtime
    # Reported as each evaluation completes, then in full; the order answers the first question
    # first: on the first eval set the base, then each arm in turn, trained then evaluated.
    assert f"[study] interim report {out / 'report.md'} (1 evaluation(s) pending)" in stderr
    runs = [line for line in stderr.splitlines() if line.startswith("[run] ")]
    order = [line.split()[1] + ":" + line.split()[-1].rsplit("/", 2)[-1] for line in runs]
    assert order.index("distill:ssb") < order.index("eval:ssb") < order.index("distill:sft"), \
        order

    study = json.loads((out / "study.json").read_text())
    assert study["complete"] and study["pending"] == []
    assert list(study["eval"]) == ["coinflip", "coinflip-again"]
    entry = study["eval"]["coinflip"]
    assert [r["arm"] for r in entry["runs"]] == ["base", "ssb", "sft", "prompt"]
    flags = {arm: _flags(out / "eval" / "coinflip" / arm / "results.jsonl")
             for arm in ("base", "ssb", "sft", "prompt")}
    # The prompt arm: chosen on the dev slice (the higher accuracy; ties: the first listed),
    # evaluated with that template and no adapter.
    choice = json.loads((out / "select" / "prompt" / "choice.json").read_text())
    acc = {t: c["accuracy"] for t, c in choice["candidates"].items()}
    assert choice["chosen"] == ("terse@1" if acc["terse@1"] > acc["coinflip@1"] else "coinflip@1")
    assert study["prompts"]["prompt"]["chosen"] == choice["chosen"]
    prompt_summary = json.loads((out / "eval" / "coinflip" / "prompt" / "summary.json").read_text())
    assert prompt_summary["settings"]["template"] == choice["chosen"]
    assert prompt_summary.get("adapter") is None
    assert not (out / "arms" / "prompt").exists()
    assert len(flags["base"]) == entry["problems"] == 8
    for run in entry["runs"]:  # accuracy, truncation and reply length = the arm's own replies
        f = flags[run["arm"]]
        assert run["accuracy"] == pytest.approx(sum(f.values()) / len(f))
        replies = [s for line in (out / "eval" / "coinflip" / run["arm"] / "results.jsonl")
                   .read_text().splitlines() for s in json.loads(line)["samples"]]
        assert run["truncation_rate"] == pytest.approx(
            sum(r["finish_reason"] == "length" for r in replies) / len(replies))
        assert run["mean_response_tokens"] == pytest.approx(
            sum(r["num_tokens"] for r in replies) / len(replies))
    for arm, c in zip(("ssb", "sft", "prompt"), entry["vs_base"]):  # discordant counts
        assert c["b_only"] == sum(flags[arm][i] and not flags["base"][i] for i in flags[arm])
        assert c["a_only"] == sum(flags["base"][i] and not flags[arm][i] for i in flags[arm])
        assert c["diff"] == pytest.approx((c["b_only"] - c["a_only"]) / 8)
    vs_sft = entry["vs_sft"][0]
    assert entry["vs_sft_arms"] == ["ssb", "prompt"] and entry["vs_prompt_arms"] == ["ssb", "sft"]
    assert vs_sft["b_only"] == sum(flags["ssb"][i] and not flags["sft"][i] for i in flags["ssb"])
    # Identical training records for both arms; one record held out of training.
    train = [json.loads(x)["id"] for x in (out / "data/train/curated.jsonl").read_text().split("\n")
             if x]
    held = [json.loads(x)["id"] for x in (out / "data/heldout/curated.jsonl").read_text().split(
        "\n") if x]
    assert len(held) == 1 and held[0] not in train and study["records"]["train"] == len(train)
    for arm in ("ssb", "sft"):
        manifest = json.loads((out / "arms" / arm / "manifest.json").read_text())
        assert manifest["config"]["curated"] == str(out / "data" / "train")
        rows = study["arms"][arm]["heldout"]
        assert rows[0]["step"] == 0 and rows[-1]["step"] == study["arms"][arm]["summary"]["steps"]
    report = (out / "report.md").read_text()
    for run in entry["runs"]:
        assert f"| {run['arm']} | {100 * run['accuracy']:.1f}% |" in report
        assert (f"| {100 * run['truncation_rate']:.1f}% | {run['mean_response_tokens']:.0f} |"
                in report)
    assert (out / "plots" / "heldout-curves.png").exists()
    assert (out / "plots" / "accuracy-coinflip.png").exists()
    assert (out / "plots" / "accuracy-coinflip-again.png").exists()
    assert "# SSB study" in stdout
    # A finished study reruns nothing.
    third = ssb_study(["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr3 = third.communicate(timeout=600)
    assert third.returncode == 0 and "[run]" not in stderr3

    # The interim report (what a study killed during its second eval set leaves): the first
    # set's numbers, the same as in the full report, and the second listed as pending.  Written
    # by the study's own function over a copy, in a process that has the coinflip plugin.
    from conftest import plugin_env

    interim_dir = tmp_path / "interim"
    shutil.copytree(out, interim_dir)
    for done_marker in (interim_dir / "eval" / "coinflip-again").glob("*/.ssb-run-stage.json"):
        done_marker.unlink()
    done = subprocess.run([sys.executable, "-c", INTERIM, str(interim_dir), str(cfg)],
                          env=plugin_env(coinflip_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    interim = json.loads((interim_dir / "study.json").read_text())
    assert not interim["complete"] and interim["pending"] == [
        f"coinflip-again:{a}" for a in ("base", "ssb", "sft", "prompt")]
    assert list(interim["eval"]) == ["coinflip"]
    assert interim["eval"]["coinflip"]["vs_base"] == entry["vs_base"]
    assert "**In progress**: 4 evaluation(s) still to run (coinflip-again:base" in (
        interim_dir / "report.md").read_text()
    assert "In progress" not in report

    # scripts/study_analysis.py reads the same numbers back from the stages' files.
    analysis_json = tmp_path / "analysis.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "study_analysis.py"), str(out),
                           "--json", str(analysis_json)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    analysis = json.loads(analysis_json.read_text())
    kept = len(curated.read_text().splitlines())
    assert analysis["curated_targets"]["records"] == kept
    assert 0 <= analysis["curated_targets"]["near_copies_of_own_correct_rollout"] <= kept
    for arm, c in zip(("ssb", "sft"), entry["vs_base"]):
        info = analysis["eval"]["coinflip"][arm]
        assert info["accuracy"] == pytest.approx(sum(flags[arm].values()) / 8, abs=1e-4)
        assert len(info["only_this_arm_right"]) == c["b_only"]
        assert len(info["only_base_right"]) == c["a_only"]
        assert analysis["heldout"][arm]["kl_start"] == study["arms"][arm]["heldout"][0]["kl"]


def test_split_is_seeded_by_record_id_not_file_order(tmp_path):
    from ssb.errors import SsbError
    from ssb.stages.study import split_records

    rows = [{"id": f"p{i}", "x": i} for i in range(20)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    held = []
    for src in (a, b):
        assert split_records(src, 5, 0, tmp_path / src.stem / "t", tmp_path / src.stem / "h") \
            == (15, 5)
        held.append({json.loads(x)["id"] for x in
                     (tmp_path / src.stem / "h" / "curated.jsonl").read_text().splitlines()})
    assert held[0] == held[1] and len(held[0]) == 5
    split_records(a, 5, 1, tmp_path / "s1" / "t", tmp_path / "s1" / "h")
    other = {json.loads(x)["id"] for x in (tmp_path / "s1/h/curated.jsonl").read_text().splitlines()}
    assert other != held[0]  # another seed, another held-out set
    with pytest.raises(SsbError, match="nothing to train on"):
        split_records(a, 20, 0, tmp_path / "x" / "t", tmp_path / "x" / "h")


def test_eval_specs_and_study_config_validation(tmp_path):
    from ssb.options import ConfigError, resolve
    from ssb.stages.run import parse_eval_spec
    from ssb.stages.study import StudyConfig

    assert parse_eval_spec("arithmetic?n=300&seed=2") == ("arithmetic", None,
                                                          {"n": "300", "seed": "2"})
    assert parse_eval_spec("gsm8k=data/t.jsonl") == ("gsm8k", "data/t.jsonl", {})
    cfg = tmp_path / "s.toml"
    cfg.write_text('domain = "arithmetic"\n[[arms]]\nname = "ssb"\nloss = "kl=1"\n[[arms]]\n'
                   'name = "ssb"\nloss = "ce=1"\nteacher = "none"\n')
    with pytest.raises(ConfigError, match="unique"):
        resolve(StudyConfig, file=cfg, flags={"out": str(tmp_path / "o")})
    cfg.write_text('domain = "arithmetic"\n[[arms]]\nname = "bad"\nlora-r = 0\n')
    with pytest.raises(ConfigError, match=r"\[arms.bad\].*--lora-r must be >= 1"):
        resolve(StudyConfig, file=cfg, flags={"out": str(tmp_path / "o")})
    assert not (tmp_path / "o").exists()
    ok = resolve(StudyConfig, file=Path(__file__).parent.parent / "studies" / "arithmetic.toml",
                 flags={"out": str(tmp_path / "o")}, nested=StudyConfig.NESTED)
    assert [a["name"] for a in ok.arms] == ["ssb", "sft"] and ok.curate["filters"] == {"n": 240}


def test_demo_preset_trains_with_the_study_ssb_arms_recipe(tmp_path):
    """The README's demo uses what the study measured working: the `ssb` arm's distill settings
    (studies/arithmetic.toml), batch size aside (the demo keeps too few records for batch 4)."""
    from ssb.options import resolve
    from ssb.stages.run import RunConfig
    from ssb.stages.study import StudyConfig

    study = resolve(StudyConfig, file=Path(__file__).parent.parent / "studies" / "arithmetic.toml",
                    flags={"out": str(tmp_path / "s")}, nested=StudyConfig.NESTED)
    arm = next(a for a in study.arms if a["name"] == "ssb")
    studied = study.distill_config(arm, tmp_path / "train", tmp_path / "heldout", tmp_path / "a")
    demo = resolve(RunConfig, preset="demo", flags={"out": str(tmp_path / "d")},
                   nested=RunConfig.NESTED)
    demoed = demo.distill_config(demo.model, tmp_path / "curate", tmp_path / "distill")
    for key in ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "lr", "epochs",
                "temperature", "loss", "teacher", "max_length", "warmup_steps", "lr_scheduler"):
        assert getattr(demoed, key) == getattr(studied, key), key
    assert (studied.batch_size, demoed.batch_size) == (4, 2)


def _study_config(tmp_path, **over):
    from ssb.stages.study import StudyConfig

    values = {"out": str(tmp_path / "s"), "domain": "gsm8k", "backend": "transformers",
              "model": "x", "eval": ["gsm8k=data/test.jsonl?max_tokens=99&limit=7",
                                     "math500?split=test&max_tokens=2048"],
              "arms": [{"name": "ssb", "loss": "kl=1,ce=0"},
                       {"name": "prompt", "prompts": ["prose@1", "plan@1"],
                        "select-on": "gsm8k?split=train&rows=10:20"}], **over}
    return StudyConfig.from_mapping(values)


def test_eval_spec_keys_set_that_dataset_and_a_prompt_arm_is_checked(tmp_path):
    from ssb.options import ConfigError

    config = _study_config(tmp_path).validate()
    assert config.arms[1]["select_on"] == "gsm8k?split=train&rows=10:20"  # TOML spelling taken
    gsm = config.eval_config(config.eval[0], "x", None, tmp_path / "e")
    assert (gsm.max_tokens, gsm.limit, gsm.filters, gsm.template) == (99, 7, {}, None)
    math = config.eval_config(config.eval[1], "x", None, tmp_path / "e", template="prose@1")
    assert (math.max_tokens, math.split, math.template, math.dataset) == (
        2048, "test", "prose@1", "math500")
    dev = config.eval_config(config.arms[1]["select_on"], "x", None, tmp_path / "e")
    assert dev.split == "train" and dev.filters == {"rows": "10:20"}
    bad_arms = [
        ([{"name": "p", "prompts": ["prose@1", "plan@1"]}], "need select_on"),
        ([{"name": "p", "prompts": []}], "non-empty list"),
        ([{"name": "p", "prompts": ["nope@9"]}], "no prompt template 'nope@9'"),
        ([{"name": "p", "prompts": ["prose@1"], "loss": "ce=1"}], "unknown: \\['loss'\\]"),
        ([{"name": "p", "prompts": ["prose@1", "plan@1"],
           "select_on": "gsm8k=data/test.jsonl?max_tokens=99&limit=7"}], "not be one of the eval"),
    ]
    for arms, message in bad_arms:
        with pytest.raises(ConfigError, match=message):
            _study_config(tmp_path, arms=arms).validate()
    with pytest.raises(ConfigError, match="limit must be an integer"):
        _study_config(tmp_path, eval=["gsm8k?limit=many"]).validate()


RECORDS = REPO / "docs" / "study-results" / "arithmetic" / "data"


def _records_study(tiny_model_dir: Path, max_steps: int) -> str:
    """A study config on the committed arithmetic records with one `sft` arm, on the tiny model."""
    return f"""
domain = "arithmetic"
backend = "transformers"
model = "{tiny_model_dir}"
records = "{RECORDS}"
eval = ["arithmetic?n=4"]
eval-split = "test"
eval-steps = 0

[distill]
epochs = 1
batch-size = 8
lora-r = 4
lora-alpha = 8
max-length = 4096
max-steps = {max_steps}

[evaluate]
max-tokens = 8

[[arms]]
name = "sft"
loss = "ce=1"
teacher = "none"
"""


@pytest.mark.slow
def test_study_on_given_records_trains_on_them_byte_for_byte(tmp_path, tiny_model_dir):
    """``records = DIR`` (the GSM8K study's Part 2: the arithmetic study's committed records,
    not re-curated): no curate stage runs, every arm trains on DIR's train records exactly, the
    held-out curves use DIR's held-out ones, and the report says where the records came from."""
    out = tmp_path / "study"
    cfg = tmp_path / "study.toml"
    cfg.write_text(_records_study(tiny_model_dir, max_steps=3))
    done = subprocess.run([sys.executable, "-m", "ssb", "study", "--config", str(cfg), "--out",
                           str(out)], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not (out / "curate").exists() and "[run] curate" not in done.stderr
    for part in ("train", "heldout"):
        assert (out / "data" / part / "curated.jsonl").read_bytes() == \
            (RECORDS / part / "curated.jsonl").read_bytes()
    study = json.loads((out / "study.json").read_text())
    n_train = len((RECORDS / "train" / "curated.jsonl").read_text().splitlines())
    n_held = len((RECORDS / "heldout" / "curated.jsonl").read_text().splitlines())
    assert study["records"] == {"train": n_train, "heldout": n_held} and n_train > n_held > 0
    assert study["curate"] == {"records": str(RECORDS)} and study["complete"]
    assert f"not curated by this study: the records in `{RECORDS}`" in \
        (out / "report.md").read_text()
    manifest = json.loads((out / "arms" / "sft" / "manifest.json").read_text())
    assert manifest["config"]["curated"] == str(out / "data" / "train")


def test_given_records_are_checked_before_anything_runs(tmp_path):
    from ssb.errors import DataError
    from ssb.options import ConfigError, resolve
    from ssb.stages.study import StudyConfig, copy_records

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    shutil.copy(RECORDS / "train" / "curated.jsonl", data / "train" / "curated.jsonl")
    flags = {"out": str(tmp_path / "o"), "domain": "arithmetic", "records": str(data)}
    with pytest.raises(ConfigError, match=r"--records .*no heldout/curated.jsonl"):
        resolve(StudyConfig, flags=flags)
    assert not (tmp_path / "o").exists()
    (data / "heldout").mkdir()
    lines = (RECORDS / "heldout" / "curated.jsonl").read_text().splitlines()
    broken = json.loads(lines[1])
    broken["solution"] = 7
    (data / "heldout" / "curated.jsonl").write_text(lines[0] + "\n" + json.dumps(broken) + "\n")
    resolve(StudyConfig, flags=flags)  # the files exist: the config is valid
    with pytest.raises(DataError, match=r"heldout/curated.jsonl:2: solution must be a string"):
        copy_records(data, tmp_path / "t", tmp_path / "h")
    assert not (tmp_path / "t").exists()  # checked before either file is written


def test_every_committed_study_config_resolves(tmp_path, monkeypatch):
    """studies/*.toml are checked as `ssb study` checks them (every stage's config built) before
    anyone spends hours on one; the ARC run's ARC-Easy set is its first 500 questions."""
    from ssb.options import resolve
    from ssb.stages.study import StudyConfig

    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)  # `records` and sources are relative to the checkout
    configs = sorted((root / "studies").glob("*.toml"))
    assert {c.stem for c in configs} >= {"arithmetic", "arithmetic-part2", "gsm8k", "arc"}
    for path in configs:
        study = resolve(StudyConfig, file=path, flags={"out": str(tmp_path / path.stem)},
                        nested=StudyConfig.NESTED)
        assert study.arms, path
    arc = resolve(StudyConfig, file=root / "studies" / "arc.toml",
                  flags={"out": str(tmp_path / "arc")}, nested=StudyConfig.NESTED)
    easy = arc.eval_config(arc.eval[1], arc.model, None, tmp_path / "e")
    assert (easy.dataset, easy.limit, arc.curate["min_correct"]) == ("arc-easy", 500, 2)


def test_study_steps_runs_what_the_study_would_and_retrains_a_lost_adapter(tmp_path,
                                                                         tiny_model_dir):
    """scripts/study_steps.py (a study continued on a fresh machine): chosen evaluations, in the
    order given, with the study's own configs and stage markers, so that `ssb study` afterwards
    skips every one of them; an arm whose adapter is gone (adapters are never committed) is
    retrained with the same seed into the same adapter, and its evaluation stands."""
    out = tmp_path / "study"
    cfg = tmp_path / "study.toml"
    cfg.write_text(_records_study(tiny_model_dir, max_steps=2) + """
[[arms]]
name = "prompt"
prompts = ["plan@1"]
""")
    steps = [sys.executable, str(REPO / "scripts" / "study_steps.py"), str(cfg), str(out)]
    done = subprocess.run([*steps, "arithmetic:prompt", "arithmetic:sft", "arithmetic:base"],
                          capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "arithmetic:prompt: instruction plan@1" in done.stderr
    assert done.stderr.count(": done: ") == 3 and "training sft" in done.stderr
    for arm in ("base", "sft", "prompt"):
        assert (out / "eval" / "arithmetic" / arm / ".ssb-run-stage.json").is_file()
    study = json.loads((out / "study.json").read_text())
    assert study["complete"] and study["eval"]["arithmetic"]["arms"] == ["sft", "prompt"]

    # `ssb study` on the same directory finds every stage complete and runs none.
    again = subprocess.run([sys.executable, "-m", "ssb", "study", "--config", str(cfg), "--out",
                            str(out), "--no-progress"], capture_output=True, text=True,
                           timeout=1500, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "[run]" not in again.stderr and again.stderr.count("[skip]") == 4, again.stderr

    # A fresh machine: the adapter is gone, its curves and marker restored. The arm is retrained
    # (the committed curves moved aside) into the same adapter, so its evaluation stands.
    shutil.rmtree(out / "arms" / "sft" / "adapter")
    redo = subprocess.run([*steps, "arithmetic:sft"], capture_output=True, text=True,
                          timeout=1500, cwd=tmp_path)
    assert redo.returncode == 0, redo.stderr[-4000:]
    assert (out / "arms" / "sft.committed" / "metrics.jsonl").is_file()
    assert (out / "arms" / "sft" / "adapter").is_dir()
    assert "adapter IS the one" in redo.stderr and "already complete" in redo.stderr

    bad = subprocess.run([*steps, "arithmetic:nope"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "want 'curate' or DATASET:ARM" in bad.stderr


def test_adapter_config_lists_its_modules_in_one_order(tmp_path):
    """peft writes target_modules in a set's order, which changes between processes: sorted on
    save, so the same training gives the same bytes (and fingerprint); study_steps.py recognises
    an adapter saved before that, with the same weights but the modules in another order."""
    import importlib.util

    from ssb.export import ADAPTER_CONFIG, adapter_fingerprint, sort_target_modules

    text = ('{\n  "r": 4,\n  "target_modules": [\n    "v_proj",\n    "q_proj",\n'
            '    "down_proj"\n  ],\n  "task_type": "CAUSAL_LM"\n}')
    sorted_text = sort_target_modules(text)
    assert json.loads(sorted_text)["target_modules"] == ["down_proj", "q_proj", "v_proj"]
    assert {k: v for k, v in json.loads(sorted_text).items() if k != "target_modules"} == \
        {k: v for k, v in json.loads(text).items() if k != "target_modules"}
    assert sorted_text.replace("down_proj", "X").count("\n") == text.count("\n")
    assert sort_target_modules(sorted_text) == sorted_text  # already canonical: unchanged

    spec = importlib.util.spec_from_file_location("study_steps", REPO / "scripts" /
                                                  "study_steps.py")
    steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(steps)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / ADAPTER_CONFIG).write_text(text)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    recorded = adapter_fingerprint(adapter)  # as an evaluation's marker recorded it
    (adapter / ADAPTER_CONFIG).write_text(sorted_text)  # retrained: same weights, sorted
    assert adapter_fingerprint(adapter) != recorded
    assert steps._same_weights_other_order(adapter, recorded, adapter_fingerprint) == text
    said: list[str] = []
    marker = tmp_path / "study" / "eval" / "gsm8k" / "ssb" / ".ssb-run-stage.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"inputs": {f"adapter:{adapter}": recorded}}))
    steps._compare_fingerprint(tmp_path / "study", "ssb", adapter, adapter_fingerprint,
                               said.append)
    assert adapter_fingerprint(adapter) == recorded  # rewritten in the recorded order
    assert (adapter / ADAPTER_CONFIG).read_text() == text and "matches" in said[0]
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    assert steps._same_weights_other_order(adapter, recorded, adapter_fingerprint) is None
