"""One meaning per flag (issue 22): ``--restart`` starts a stage from nothing, and
``--accept-changed-config`` resumes under a changed config where that is safe; ``--force`` is a
deprecated alias for what it meant for each command.  And config files and flags that were
silently wrong (issue 21): flags merge into a table key by key, misspelled tables and keys given
twice are refused, a launcher is checked before the first stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _pipeline_toml(path: Path, model: Path) -> Path:
    path.write_text(f"""
domain = "coinflip"
backend = "transformers"
model = "{model}"
seed = 0
limit = 16
eval = ["coinflip"]
eval-limit = 2
eval-max-tokens = 8

[curate]
rollouts = 4
max-tokens = 12
batch-size = 4

[curate.filters]
n = 24

[distill]
max-steps = 1
batch-size = 2
lora-r = 4
lora-alpha = 8
max-length = 128
""")
    return path


def _journal_ids(curate_dir: Path) -> list[str]:
    return [json.loads(line)["id"] for line in
            (curate_dir / "journal.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_run_force_after_a_config_change_does_not_mix_two_configs_in_curate(
        tmp_path, tiny_model_dir, coinflip_path):
    """Before the fix, `ssb run --force` passed `force` into curate, where it meant "resume even
    though the config changed": the 16 problems curated at temperature 0.8 would stay in the
    journal and curated.jsonl beside 4 made at 0.5, under a manifest that says 0.5 (the last
    step shows that path, now reachable only as --accept-changed-config).  Now --force means
    --restart for `ssb run`: every record is made under the new config."""
    from conftest import ssb_subprocess

    out = tmp_path / "run"
    cfg = _pipeline_toml(tmp_path / "p.toml", tiny_model_dir)
    first = ssb_subprocess("run", ["--config", str(cfg), "--out", str(out), "--no-progress"],
                           coinflip_path)
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-3000:]
    assert sorted(_journal_ids(out / "curate")) == sorted(f"coinflip/train/{i}" for i in range(16))

    again = ssb_subprocess("run", ["--config", str(cfg), "--out", str(out), "--no-progress",
                                   "--limit", "20", "--curate", "temperature=0.5", "--force"],
                           coinflip_path)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    stats = json.loads((out / "curate" / "stats.json").read_text())
    manifest = json.loads((out / "curate" / "manifest.json").read_text())
    assert manifest["config"]["temperature"] == 0.5
    # Every record was made under the new config: nothing resumed from the old journal.
    assert stats["this_run"]["already_done"] == 0 and not stats["this_run"]["resumed"]
    assert sorted(_journal_ids(out / "curate")) == sorted(f"coinflip/train/{i}" for i in range(20))
    warnings = [line for line in err.splitlines() if "--force" in line]
    assert warnings == ["warning: --force is deprecated; for `ssb run` it means --restart "
                        "(rerun every stage from nothing): use --restart"], warnings

    # What `--force` did before is still there, asked for by name: curate resumes its journal
    # under the changed config (the 20 problems made at 0.5 stay, 4 are added at 0.4).
    mixed = ssb_subprocess("run", ["--config", str(cfg), "--out", str(out), "--no-progress",
                                   "--limit", "24", "--curate", "temperature=0.4",
                                   "--accept-changed-config"], coinflip_path)
    _, err = mixed.communicate(timeout=900)
    assert mixed.returncode == 0, err[-3000:]
    stats = json.loads((out / "curate" / "stats.json").read_text())
    assert stats["this_run"]["resumed"] and stats["this_run"]["already_done"] == 20
    assert sorted(_journal_ids(out / "curate")) == sorted(f"coinflip/train/{i}" for i in range(24))


# -- issue 21 §2: config files and flags ---------------------------------------------------------

def test_a_flag_merges_into_the_files_table_key_by_key(tmp_path):
    """`--distill max_steps=1` used to replace the file's whole [distill] table (lora-r back to
    32); a preset's table merges the same way under the file's and the flags'."""
    from ssb.options import resolve
    from ssb.stages.run import RunConfig
    from ssb.stages.study import StudyConfig

    cfg = tmp_path / "p.toml"
    cfg.write_text('domain = "arithmetic"\nbackend = "transformers"\n'
                   '[distill]\nlora-r = 4\nmax-steps = 3\n[curate]\nrollouts = 3\n')
    for cls in (RunConfig, StudyConfig):
        config = resolve(cls, file=cfg, flags={"out": str(tmp_path / "o"),
                                               "distill": ["max_steps=1"],
                                               "curate": ["max-tokens=64"]}, nested=cls.NESTED)
        assert config.distill == {"lora_r": 4, "max_steps": "1"}, cls
        assert config.curate == {"rollouts": 3, "max_tokens": "64"}, cls
    run = resolve(RunConfig, file=cfg, flags={"out": str(tmp_path / "o"),
                                              "distill": ["max_steps=1"]}, nested=RunConfig.NESTED)
    distill = run.distill_config(run.model, tmp_path / "c", tmp_path / "d")
    assert (distill.lora_r, distill.max_steps) == (4, 1)
    demo = resolve(RunConfig, preset="demo", flags={"out": str(tmp_path / "o"),
                                                    "curate": ["max_tokens=100"]},
                   nested=RunConfig.NESTED)
    assert demo.curate == {"rollouts": 4, "max_tokens": "100", "teacher_max_tokens": 512,
                           "batch_size": 4}


@pytest.mark.parametrize("command, table, suggestion", [
    ("run", "evl", "eval"), ("run", "curat", "curate"), ("curate", "curat", "curate"),
    ("study", "distil", "distill")])
def test_a_misspelled_table_is_refused_with_a_suggestion(tmp_path, ssb_cli, command, table,
                                                         suggestion):
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'domain = "arithmetic"\nbackend = "transformers"\nmodel = "x"\n'
                   f'[{table}]\nmax-tokens = 5\n')
    out = tmp_path / "o"
    code, _, err = ssb_cli(command, "--config", str(cfg), "--out", str(out))
    assert code == 2
    assert f"unknown table [{table}]; did you mean {suggestion!r}?" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("command, text", [
    ("curate", "[curate]\nmax-tokens = 5\nmax_tokens = 6\n"),
    ("curate", "max-tokens = 5\nmax_tokens = 6\n"),
    ("run", "[curate]\nmax-tokens = 5\nmax_tokens = 6\n"),
    ("run", "[distill]\nlora-r = 4\nlora_r = 8\n"),
    ("eval", "[eval]\nfilter = {n = 3}\nfilters = {n = 4}\n")])
def test_one_key_under_two_spellings_is_refused(tmp_path, ssb_cli, command, text):
    cfg = tmp_path / "p.toml"
    cfg.write_text('domain = "arithmetic"\ndataset = "arithmetic"\nbackend = "transformers"\n'
                   'model = "x"\n' + text if command != "eval" else
                   'dataset = "arithmetic"\nbackend = "transformers"\nmodel = "x"\n' + text)
    code, _, err = ssb_cli(command, "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert code == 2 and "give it once" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_launcher_is_checked_before_the_first_stage(tmp_path, ssb_cli):
    out = tmp_path / "run"
    args = ["run", "--domain", "arithmetic", "--backend", "transformers", "--model", "x",
            "--out", str(out)]
    code, _, err = ssb_cli(*args, "--launcher", "no-such-launcher-7f3a --num_processes 2")
    assert code == 2 and "'no-such-launcher-7f3a' is not on PATH" in err
    assert not out.exists()
    code, _, err = ssb_cli(*args, "--launcher", "accelerate 'launch")
    assert code == 2 and "--launcher" in err and not out.exists()
    code, _, err = ssb_cli("study", *args[1:], "--launcher", str(tmp_path / "nope"))
    assert code == 2 and "is not an executable file" in err and not out.exists()


# -- issue 22 §1: one meaning per flag, declared once --------------------------------------------

def test_force_still_works_in_python_with_a_deprecation_warning():
    from ssb.stages.curate import CurateConfig
    from ssb.stages.distill.trainer import DistillConfig
    from ssb.stages.run import RunConfig
    from ssb.stages.study import StudyConfig

    with pytest.warns(DeprecationWarning, match="for `ssb curate` it means --accept-changed"):
        c = CurateConfig(domain="arithmetic", backend="transformers", model="x", out="o",
                         force=True)
    assert (c.accept_changed_config, c.restart, c.force) == (True, False, False)
    with pytest.warns(DeprecationWarning, match="for `ssb distill` it means --accept-changed"):
        d = DistillConfig(curated="c", model="x", out="o", force=True)
    assert d.accept_changed_config and not d.restart
    for cls in (RunConfig, StudyConfig):
        with pytest.warns(DeprecationWarning, match="it means --restart"):
            r = cls(out="o", domain="arithmetic", force=True)
        assert r.restart and not r.accept_changed_config and not r.force
        assert r.curate_config(r.model, Path("c")).restart  # every stage from nothing


def test_the_same_flags_in_every_stage():
    """--restart and --accept-changed-config (and the short -b -m -d -o) mean one thing, spelled
    the same, wherever the option exists."""
    from ssb.stages.curate import CurateConfig
    from ssb.stages.distill.trainer import DistillConfig
    from ssb.stages.evaluate import EvalConfig
    from ssb.stages.run import RunConfig
    from ssb.stages.study import StudyConfig
    from ssb.stages.teacher_logits import TeacherLogitsConfig

    shorts = {"backend": "-b", "model": "-m", "dataset": "-d", "out": "-o",
              "backend_options": "-B"}
    for cls in (CurateConfig, EvalConfig, DistillConfig, TeacherLogitsConfig, RunConfig,
                StudyConfig):
        specs = {s.name: s for s in cls.specs()}
        for name in ("restart", "accept_changed_config", "force"):
            assert not specs[name].resume and specs[name].default is False, (cls, name)
        assert specs["force"].deprecated is not None
        for name, short in shorts.items():
            if name in specs:
                assert specs[name].short == short, (cls, name)
        # One declaration, one help text: the model option reads the same everywhere.
        assert specs["model"].help.startswith("Model"), cls


def test_short_flags_on_every_stage_command(ssb_cli):
    for command, shorts in (("curate", "-b -m -d -o -B -w"), ("distill", "-m -o"),
                            ("teacher-logits", "-m -o"), ("eval", "-b -m -d -o -B"),
                            ("run", "-b -m -d -o -B"), ("study", "-b -m -d -o -B")):
        code, out, _ = ssb_cli(command, "--help")
        assert code == 0
        words = set(out.replace(",", " ").split())
        for short in shorts.split():
            assert short in words, (command, short)


def test_run_and_study_share_one_declaration_of_their_common_options():
    from ssb.option_groups import PipelineOptions
    from ssb.stages.run import RunConfig
    from ssb.stages.study import StudyConfig

    shared = {f.name for f in __import__("dataclasses").fields(PipelineOptions)}
    assert len(shared) >= 16
    for cls in (RunConfig, StudyConfig):
        specs = {s.name: s for s in cls.specs()}
        for name in shared:
            assert specs[name].help == RunConfig.spec(name).help == StudyConfig.spec(name).help


def test_the_pipeline_domain_comes_from_what_is_installed(tmp_path, monkeypatch):
    """No default names a plugin's domain: the dataset's domain, the only installed one, or a
    clear refusal listing them."""
    from ssb.options import ConfigError
    from ssb.plugins import get_registry
    from ssb.stages.run import RunConfig

    out = str(tmp_path / "o")
    assert RunConfig(out=out, dataset="gsm8k").validate().domain == "gsm8k"
    assert RunConfig(out=out, domain="arithmetic").validate().domain == "arithmetic"
    if len(get_registry().domains()) > 1:
        with pytest.raises(ConfigError, match=r"`ssb run` needs --domain: \d+ domains are "
                           r"installed \(.*arithmetic.*\)"):
            RunConfig(out=out).validate()
    monkeypatch.setenv("SSB_LOAD_PLUGINS", "arithmetic,backends")
    try:
        get_registry(refresh=True)
        assert RunConfig(out=out).validate().domain == "arithmetic"
    finally:
        monkeypatch.undo()
        get_registry(refresh=True)


def test_a_completed_stage_is_skipped_whatever_its_control_flags(tmp_path):
    """A stage completed by an earlier run (recorded with the old `force`) or with --restart is
    still complete: the steering flags are not part of what the stage computed."""
    import json as _json

    from ssb.events import Reporter
    from ssb.secrets import redact
    from ssb.stages.run import STAGE_DONE, run_stage
    from ssb.stages.curate import CurateConfig

    out = tmp_path / "curate"
    out.mkdir()
    config = CurateConfig(domain="arithmetic", backend="transformers", model="x",
                          out=str(out)).validate()
    recorded = {k: v for k, v in redact(config.manifest()).items()
                if k not in ("restart", "accept_changed_config")}
    recorded["force"] = False  # what a stage completed before the two flags recorded
    (out / STAGE_DONE).write_text(_json.dumps({"stage": "curate", "config": recorded}))
    logs = []
    report = Reporter("run", lambda e: logs.append(e.message))
    assert run_stage("curate", config.replace(restart=True), out, report) is False
    assert logs == [f"[skip] curate: complete in {out}"]


def test_a_completed_stage_is_skipped_when_only_options_outside_its_identity_differ(
        tmp_path, monkeypatch):
    """Options that do not change what a stage computes (``resume=False``: batch sizes,
    checkpoint spacing, the teacher cache) neither rerun a completed stage when changed nor when
    a later version adds one (a distill recorded before ``--teacher-cache-gib`` existed); an
    option that does change it reruns the stage."""
    import json as _json

    from ssb.events import Reporter
    from ssb.secrets import redact
    from ssb.stages.distill.trainer import DistillConfig
    from ssb.stages.run import STAGE_DONE, run_stage

    out = tmp_path / "distill"
    out.mkdir()
    config = DistillConfig(curated="c", model="x", out=str(out)).validate()
    recorded = redact(config.manifest())
    del recorded["teacher_cache_gib"]  # what a distill completed before the option recorded
    (out / STAGE_DONE).write_text(_json.dumps({"stage": "distill", "config": recorded}))
    logs = []
    report = Reporter("run", lambda e: logs.append(e.message))
    for same in (config, config.replace(save_steps=7, logit_chunk=64, teacher_cache_gib=0.0)):
        assert run_stage("distill", same, out, report) is False
    assert logs == [f"[skip] distill: complete in {out}"] * 2
    ran = []  # what would run (the decision is under test here, not the training)
    monkeypatch.setattr("ssb.stages.run.run_stage_process",
                        lambda stage, cfg, *a, **k: ran.append(cfg.lr))
    assert run_stage("distill", config.replace(lr=1e-3), out, report) is True
    assert ran == [1e-3]


def test_a_completed_stage_whose_inputs_changed_is_moved_aside_and_run_again(
        tmp_path, monkeypatch):
    """An arm retrained under the same path makes its evaluation stale although the eval's
    config did not change: the completed stage is moved aside whole and runs afresh.  Unchanged
    inputs (or a marker written before inputs were recorded) still skip it."""
    import json as _json

    from ssb.events import Reporter
    from ssb.stages.evaluate import EvalConfig
    from ssb.stages.run import STAGE_DONE, run_stage

    adapter = tmp_path / "arm" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    out = tmp_path / "eval"
    config = EvalConfig(dataset="arithmetic", backend="transformers", model="x",
                        adapter=str(adapter), out=str(out)).validate()

    def fake_stage(stage, cfg, out_dir, *a, **k):  # the decision is under test, not the eval
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.jsonl").write_text("old\n")

    monkeypatch.setattr("ssb.stages.run.run_stage_process", fake_stage)
    logs = []
    report = Reporter("run", lambda e: logs.append(e.message))
    assert run_stage("eval", config, out, report) is True
    assert run_stage("eval", config, out, report) is False  # same config, same adapter
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # the arm retrained
    assert run_stage("eval", config, out, report) is True
    (stale,) = tmp_path.glob("eval.stale-*")
    assert (stale / "results.jsonl").read_text() == "old\n"  # moved aside, not lost
    assert logs[-2] == (f"[stale] eval: adapter:{adapter} changed since it ran in {out}; its "
                        f"outputs moved to {stale}")
    marker = _json.loads((out / STAGE_DONE).read_text())
    del marker["inputs"]  # a stage completed before inputs were recorded
    (out / STAGE_DONE).write_text(_json.dumps(marker))
    assert run_stage("eval", config, out, report) is False
