"""`ssb study` with a rounds arm on llama.cpp (the tiny model as a GGUF): round 2 curates new
problems with the base GGUF + the `ssb` arm's LoRA, trains on that arm merged into the fp32
weights (its teacher), and is evaluated as the base + both LoRAs folded into one; a SIGKILL in
round 2's distill loses and repeats nothing; the report pairs round 2 with round 1.  The config
checks of a rounds arm run before anything does."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from test_run import stopping_model  # noqa: F401  (fixture)


def write_study(path: Path, gguf: Path, hf_model: Path) -> Path:
    path.write_text(f"""
domain = "coinflip"
backend = "llama.cpp"
model = "{gguf}"
distill-model = "{hf_model}"
backend-options = {{n_threads = 1, n_ctx = 512, n_parallel = 4}}
seed = 0
heldout = 1
eval-steps = 2
eval = ["coinflip"]
eval-limit = 8

[curate]
filters = {{ n = 64 }}
rollouts = 4
max-tokens = 12
teacher-max-tokens = 64
batch-size = 4

[distill]
epochs = 4
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
name = "ssb-r2"            # round 2 of `ssb`, on problems round 1 never saw
round-of = "ssb"
curate = {{ split = "dev" }}
""")
    return path


@pytest.mark.slow
def test_rounds_arm_on_llama_cpp_resumes_after_sigkill_and_pairs_with_round_1(
        tmp_path, stopping_model, coinflip_path):  # noqa: F811
    from conftest import ssb_subprocess

    hf_model, gguf = stopping_model
    cfg = write_study(tmp_path / "study.toml", gguf, hf_model)
    out = tmp_path / "study"
    r2 = out / "rounds" / "ssb-r2"
    proc = ssb_subprocess("study", ["--config", str(cfg), "--out", str(out)], coinflip_path)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if list((r2 / "distill").glob("**/checkpoint-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the study ended before round 2's distill: " + \
        proc.communicate()[1][-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (r2 / "distill" / "adapter" / "adapter_config.json").exists()
    kept = {p: p.stat().st_mtime_ns for p in (
        out / "curate" / "curated.jsonl", out / "arms" / "ssb" / "adapter" /
        "adapter_model.safetensors", out / "eval" / "coinflip" / "ssb" / "results.jsonl",
        r2 / "merged" / "config.json", r2 / "curator" / "adapter.gguf",
        r2 / "curate" / "curated.jsonl")}
    split = (r2 / "data" / "train" / "curated.jsonl").read_bytes()
    curate2 = json.loads((r2 / "curate" / "manifest.json").read_text())["config"]
    assert curate2["model"] == str(gguf)  # the base GGUF, not re-quantized...
    assert curate2["adapter"] == str(r2 / "curator" / "adapter.gguf")  # ...+ round 1's LoRA
    assert curate2["split"] == "dev"  # the arm's own problems
    ids = [json.loads(line)["id"] for line in (r2 / "curate" / "journal.jsonl").read_text()
           .splitlines()]
    assert ids and all(i.startswith("coinflip/dev/") for i in ids)

    again = ssb_subprocess("study", ["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr[-4000:]
    ran = [line for line in stderr.splitlines() if line.startswith("[run] ")]
    # Only round 2's unfinished distill and what follows it run again; nothing before it.
    assert ran == [f"[run] distill -> {r2 / 'distill'}",
                   f"[run] eval -> {out / 'eval' / 'coinflip' / 'ssb-r2'}"], ran
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (r2 / "data" / "train" / "curated.jsonl").read_bytes() == split  # the same split
    distill2 = json.loads((r2 / "distill" / "manifest.json").read_text())["config"]
    assert distill2["model"] == str(r2 / "merged")  # trained on round 1 merged (fp32)...
    assert distill2["loss"] == "kl=1,ce=0" and distill2["temperature"] == 2.0  # ...as round 1
    assert distill2["curated"] == str(r2 / "data" / "train")
    folded = json.loads((r2 / "student" / "adapter_config.json").read_text())
    assert folded["r"] == 8  # rank 4 + 4: both rounds in one LoRA
    summary = json.loads((out / "eval" / "coinflip" / "ssb-r2" / "summary.json").read_text())
    assert summary["model"] == str(gguf) and summary["adapter"] == str(r2 / "student")

    study = json.loads((out / "study.json").read_text())
    assert study["complete"] and study["pending"] == []
    entry = study["rounds"]["ssb-r2"]
    assert entry["round_of"] == "ssb" and entry["round"] == 2
    assert entry["curate"]["problems_seen"] == 64 and entry["curate"]["kept"] >= 2
    assert entry["records"]["heldout"] == 1
    assert entry["records"]["train"] == entry["curate"]["kept"] - 1
    ev = study["eval"]["coinflip"]
    assert ev["arms"] == ["ssb", "ssb-r2"]
    (versus,) = ev["vs_previous_round"]
    flags = {a: {json.loads(line)["id"]: json.loads(line)["samples"][0]["correct"]
                 for line in (out / "eval" / "coinflip" / a / "results.jsonl").read_text()
                 .splitlines()} for a in ("ssb", "ssb-r2")}
    assert versus["arm"] == "ssb-r2" and versus["previous"] == "ssb"
    assert versus["diff"] == pytest.approx(
        (sum(flags["ssb-r2"].values()) - sum(flags["ssb"].values())) / len(flags["ssb"]))
    assert "distill:ssb-r2" in study["wall_seconds"] and "curate:ssb-r2" in study["wall_seconds"]
    report = (out / "report.md").read_text()
    assert "## Rounds arm `ssb-r2` (round 2, continues `ssb`)" in report
    assert "| arm | vs ssb (pts) |" in report and "| ssb-r2 |" in report


@pytest.mark.slow
def test_rounds_on_hf_dirs_a_chain_and_rounds_that_stop(tmp_path, stopping_model,  # noqa: F811
                                                        coinflip_path):
    """On a backend that loads HF directories (transformers): round 2 curates with and trains
    on `ssb` merged, and is evaluated as round 2 merged onto that; round 3 continues round 2
    (merged onto round 2's merged model) but keeps too few problems to hold one out and train,
    so it stops, and round 4, which continues it, stops too.  The study completes and reports
    both stops; neither is pending."""
    from conftest import ssb_subprocess

    tiny_model_dir = stopping_model[0]  # the tiny model made to end its answers, HF directory
    cfg = tmp_path / "study.toml"
    cfg.write_text(f"""
domain = "coinflip"
backend = "transformers"
model = "{tiny_model_dir}"
seed = 0
heldout = 1
eval-steps = 0
eval = ["coinflip"]
eval-limit = 8

[curate]
filters = {{ n = 32 }}
rollouts = 4
max-tokens = 12
batch-size = 8

[distill]
epochs = 1
batch-size = 2
lora-r = 4
lora-alpha = 8
max-length = 256
save-steps = 50

[evaluate]
max-tokens = 12

[[arms]]
name = "ssb"
loss = "kl=1,ce=0"

[[arms]]
name = "r2"
round-of = "ssb"
curate = {{ split = "dev", filters = {{ n = 32 }} }}

[[arms]]
name = "r3"
round-of = "r2"
curate = {{ split = "dev", filters = {{ n = 1 }} }}   # at most 1 kept: none left to train on

[[arms]]
name = "r4"
round-of = "r3"
""")
    out = tmp_path / "study"
    proc = ssb_subprocess("study", ["--config", str(cfg), "--out", str(out)], coinflip_path)
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-4000:]
    rounds = out / "rounds"
    curate2 = json.loads((rounds / "r2" / "curate" / "manifest.json").read_text())["config"]
    assert curate2["model"] == str(rounds / "r2" / "merged") and curate2["adapter"] is None
    stamp = json.loads((rounds / "r2" / "merged" / "ssb-merged.json").read_text())
    assert stamp["base"] == str(tiny_model_dir)
    assert stamp["adapter"] == str(out / "arms" / "ssb" / "adapter")
    stamp3 = json.loads((rounds / "r3" / "merged" / "ssb-merged.json").read_text())
    assert stamp3["base"] == str(rounds / "r2" / "merged")  # round 3 = round 2 merged + its LoRA
    assert stamp3["adapter"] == str(rounds / "r2" / "distill" / "adapter")
    summary = json.loads((out / "eval" / "coinflip" / "r2" / "summary.json").read_text())
    assert summary["model"] == str(rounds / "r2" / "student-merged") and not summary["adapter"]
    assert not (rounds / "r3" / "distill").exists() and not (out / "eval" / "coinflip" /
                                                              "r3").exists()
    study = json.loads((out / "study.json").read_text())
    assert study["complete"] and study["pending"] == []
    assert "too few to hold 1 out" in study["rounds"]["r3"]["stopped"]
    assert study["rounds"]["r4"]["stopped"] == "the round it continues (r3) stopped"
    assert "stopped" not in study["rounds"]["r2"]
    assert study["eval"]["coinflip"]["arms"] == ["ssb", "r2"]
    assert [c["arm"] for c in study["eval"]["coinflip"]["vs_previous_round"]] == ["r2"]
    report = (out / "report.md").read_text()
    assert "- **stopped**: the round it continues (r3) stopped" in report


def test_rounds_arm_config_is_checked_before_anything_runs(tmp_path):
    from ssb.options import ConfigError
    from ssb.stages.study import StudyConfig

    def config(arms):
        return StudyConfig.from_mapping({
            "out": str(tmp_path / "s"), "domain": "gsm8k", "backend": "transformers",
            "model": "x", "eval": ["gsm8k=data/test.jsonl"], "arms": arms})

    ssb = {"name": "ssb", "loss": "kl=1,ce=0"}
    good = config([dict(ssb), {"name": "r2", "round-of": "ssb", "lr": 1e-4,
                               "curate": {"split": "test", "until-kept": 9}}]).validate()
    r2 = good.arms[1]
    assert r2["round_of"] == "ssb" and r2["curate"] == {"split": "test", "until_kept": 9}
    from ssb.stages.study_rounds import distill_options

    table = {a["name"]: a for a in good.arms}
    assert distill_options(table, r2) == {"loss": "kl=1,ce=0", "lr": 1e-4}
    r3 = {"name": "r3", "round_of": "r2"}
    assert distill_options({**table, "r3": r3}, r3) == {"loss": "kl=1,ce=0", "lr": 1e-4}
    bad = [
        ([{"name": "r2", "round_of": "ssb"}, dict(ssb)], "listed before"),
        ([dict(ssb), {"name": "r2", "round_of": "nope"}], "listed before: \\['ssb'\\]"),
        ([{"name": "p", "prompts": ["prose@1"]}, {"name": "r2", "round_of": "p"}],
         "is a prompt arm"),
        ([dict(ssb), {"name": "r2", "round_of": "ssb", "curate": {"model": "y"}}],
         "remove \\['model'\\]"),
        ([dict(ssb), {"name": "r2", "round_of": "ssb", "curate": {"rolouts": 3}}],
         "rolouts"),
        ([dict(ssb), {"name": "r2", "round_of": "ssb", "lora_r": 0}],
         "arms.r2\\] --lora-r must be >= 1"),
    ]
    for arms, message in bad:
        with pytest.raises(ConfigError, match=message):
            config(arms).validate()
