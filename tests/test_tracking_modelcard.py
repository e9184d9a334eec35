"""Around a training run: experiment trackers (--report-to) and the adapter's model card.

A tiny distill with TensorBoard writes event files that hold the loss and learning-rate
scalars (read back offline); a tracker that is unknown or not installed is refused before
training, in one line that says what to install, by distill, run and study alike; the adapter
gets a README.md model card, and `ssb export` carries it to the GGUF side."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from test_alignment import make_record, write_curated


def _missing_tracker() -> str:
    from ssb.tracking import TRACKERS

    missing = [name for name, module in TRACKERS.items()
               if importlib.util.find_spec(module) is None]
    assert missing, "every tracker is installed: nothing to refuse"
    return missing[0]


@pytest.fixture(scope="module")
def tracked(tiny_model_dir, tmp_path_factory):
    from ssb.stages.distill.trainer import DistillConfig, distill

    root = tmp_path_factory.mktemp("tracked")
    curated = write_curated(root / "curate", [make_record(i) for i in range(2)])
    (root / "curate" / "stats.json").write_text(json.dumps(
        {"problems_seen": 5, "kept": 2, "rollout_accuracy": 0.4, "teacher_accuracy": 0.5}))
    cfg = DistillConfig(curated=str(curated), model=str(tiny_model_dir), out=str(root / "out"),
                        lora_r=4, lora_alpha=8, lora_dropout=0.0, batch_size=1, max_steps=3,
                        lr=1e-3, save_steps=1000, max_length=256, report_to="tensorboard")
    return cfg, distill(cfg).summary


def test_tensorboard_receives_loss_and_learning_rate(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, summary = tracked
    logdir = Path(cfg.out) / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*")), sorted(Path(cfg.out).rglob("*"))
    events = EventAccumulator(str(logdir))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "train/loss_kl"} <= set(tags), tags
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    metrics = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").open()]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in metrics], rel=1e-6)
    lr = events.Scalars("train/learning_rate")
    assert [e.value for e in lr] == pytest.approx([r["lr"] for r in metrics], rel=1e-6)
    assert lr[0].value > lr[-1].value  # the linear schedule decays


def test_adapter_model_card(tracked):
    import ssb
    from ssb.stage import sha256_file

    cfg, summary = tracked
    card = (Path(cfg.out) / "adapter" / "README.md").read_text(encoding="utf-8")
    curated = Path(cfg.curated)
    curated = curated / "curated.jsonl" if curated.is_dir() else curated
    assert card.startswith("---\nbase_model: ")
    assert f"`{cfg.model}`" in card  # the base model
    assert f"curated records: 2 (`curated.jsonl`, sha256 `{sha256_file(curated)}`)" in card
    assert "5 problems seen, 2 kept" in card  # the curation counts (stats.json)
    assert "| loss | `kl=1,ce=0` |" in card and "| temperature T | `2.0` |" in card
    assert "| LoRA rank r | `4` |" in card and "| learning rate | `0.001` |" in card
    assert f"last {summary['last_loss']:.4g}" in card  # the training loss
    assert f"ssb {ssb.__version__} (distribution `softboot`), commit `" in card
    assert "Not evaluated by this run" in card


def test_model_card_gains_the_evaluation_and_export_carries_it(tracked, tmp_path):
    """What `ssb run` does after its evaluations (ssb.modelcard.add_evaluation), then export."""
    import shutil

    from ssb.export import export_lora_to_gguf
    from ssb.modelcard import add_evaluation

    cfg, _ = tracked
    adapter = tmp_path / "adapter"
    shutil.copytree(Path(cfg.out) / "adapter", adapter)
    base, mine = tmp_path / "eval-base", tmp_path / "eval-student"
    for d, flags in ((base, [1, 0, 0, 1]), (mine, [1, 1, 0, 1])):
        d.mkdir()
        with open(d / "results.jsonl", "w") as f:
            for i, ok in enumerate(flags):
                f.write(json.dumps({"id": f"p{i}", "question": f"q{i}", "gold": "1",
                                    "samples": [{"correct": bool(ok)}]}) + "\n")
        (d / "summary.json").write_text(json.dumps({"dataset": "arithmetic", "split": "test",
                                                    "settings": {}}))
    add_evaluation(adapter, {"arithmetic": (base, mine)})
    card = (adapter / "README.md").read_text(encoding="utf-8")
    assert "Not evaluated by this run" not in card
    assert "| arithmetic | 4 | 50.0% | 75.0% | +25.0 (" in card
    assert card.index("## Evaluation") < card.index("## Provenance")  # replaced in place
    report = export_lora_to_gguf(adapter, tmp_path / "student.gguf", base=cfg.model)
    copied = tmp_path / "student.README.md"
    assert report.card == str(copied)
    text = copied.read_text(encoding="utf-8")
    assert text.startswith(card.rstrip("\n")) and "`student.gguf` is this adapter" in text


@pytest.mark.parametrize("value, message", [
    ("tensorbored", "--report-to tensorbored: unknown tracker (one of: none, tensorboard, "
                    "wandb, trackio)"),
    ("none,tensorboard", "'none' cannot be combined"),
])
def test_bad_report_to_is_refused_in_one_line(ssb_cli, tiny_model_dir, tmp_path, value, message):
    curated = write_curated(tmp_path / "c", [make_record(0)])
    code, _, err = ssb_cli("distill", "--curated", str(curated), "--model", str(tiny_model_dir),
                           "--out", str(tmp_path / "out"), "--report-to", value)
    assert code == 2 and message in err and "\n" not in err.strip()
    assert not (tmp_path / "out").exists()


def test_missing_tracker_is_refused_before_training_everywhere(ssb_cli, tiny_model_dir,
                                                               tmp_path):
    tracker = _missing_tracker()
    want = f"--report-to {tracker}: not installed; pip install 'softboot[{tracker}]'"
    curated = write_curated(tmp_path / "c", [make_record(0)])
    code, _, err = ssb_cli("distill", "--curated", str(curated), "--model", str(tiny_model_dir),
                           "--out", str(tmp_path / "d"), "--report-to", tracker)
    assert code == 2 and want in err and "\n" not in err.strip()
    assert not (tmp_path / "d").exists()
    # run and study carry the option into every distill config, checked before any stage.
    for command in ("run", "study"):
        out = tmp_path / command
        code, _, err = ssb_cli(command, "--out", str(out), "--backend", "transformers",
                               "--model", str(tiny_model_dir), "--domain", "arithmetic",
                               "--report-to", tracker)
        assert code == 2 and want in err, (command, err)
        assert not (out / "curate").exists()


def test_run_and_study_pass_report_to_to_distill(tiny_model_dir, tmp_path):
    from ssb.options import resolve
    from ssb.stages.run import RunConfig
    from ssb.stages.study import StudyConfig

    flags = {"out": str(tmp_path / "r"), "backend": "transformers",
             "model": str(tiny_model_dir), "domain": "arithmetic", "report_to": "tensorboard"}
    run_cfg = resolve(RunConfig, flags=flags)
    assert run_cfg.distill_config(str(tiny_model_dir), tmp_path / "c",
                                  tmp_path / "d").report_to == "tensorboard"
    study_cfg = resolve(StudyConfig, flags=flags)
    arm = study_cfg.distill_config(study_cfg.arms[0], tmp_path / "t", tmp_path / "h",
                                   tmp_path / "a")
    assert arm.report_to == "tensorboard"
