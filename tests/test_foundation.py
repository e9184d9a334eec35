"""The core: plugin loading (incl. broken plugins and the allow-list), records, journal, config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssb.errors import DataError, SsbError
from ssb.journal import Journal, atomic_write_json, read_jsonl
from ssb.records import CuratedRecord, Problem, Rollout, RunManifest
from ssb.testing import install_plugin_module


def make_dist(root: Path, dist: str, entry_name: str, module: str, source: str) -> Path:
    return install_plugin_module(root, dist, entry_name, module, source)


def run_ssb(*args: str, pythonpath: Path | None = None, env: dict | None = None):
    from conftest import allowed_env

    full_env = dict(os.environ)
    if pythonpath is not None:
        full_env = allowed_env(pythonpath, full_env)
        full_env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{full_env.get('PYTHONPATH', '')}"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


GOOD_PLUGIN = """
from ssb.hookspecs import hookimpl
from ssb.types import Loss

def half_kl(inputs):
    from ssb.losses import forward_kl
    return 0.5 * forward_kl(inputs)

@hookimpl
def register_losses(register):
    register(Loss("half-kl", half_kl, "half the forward KL"))
"""


@pytest.fixture
def plugin_path(tmp_path):
    root = tmp_path / "site"
    make_dist(root, "ssb-plugin-broken", "broken", "ssb_broken_plugin",
              "raise RuntimeError('boom at import')\n")
    make_dist(root, "ssb-plugin-halfkl", "halfkl", "ssb_halfkl_plugin", GOOD_PLUGIN)
    return root


def test_broken_plugin_is_reported_and_cli_keeps_working(plugin_path):
    proc = run_ssb("plugins", "--json", pythonpath=plugin_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    errors = {e["name"]: e for e in report["errors"]}
    assert "broken" in errors
    assert errors["broken"]["distribution"] == "ssb-plugin-broken"
    assert "boom at import" in errors["broken"]["error"]
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["halfkl"]["registers"]["losses"] == ["half-kl"]
    assert plugins["halfkl"]["version"] == "1.2.3"
    # the human-readable listing names the broken plugin too, and --help still works
    human = run_ssb("plugins", pythonpath=plugin_path)
    assert human.returncode == 0 and "broken" in human.stdout
    assert run_ssb("--help", pythonpath=plugin_path).returncode == 0


def test_allow_list_limits_loaded_plugins(plugin_path):
    proc = run_ssb("plugins", "--json", pythonpath=plugin_path,
                   env={"SSB_LOAD_PLUGINS": "halfkl"})
    report = json.loads(proc.stdout)
    names = {p["name"] for p in report["plugins"]}
    assert "halfkl" in names
    assert report["errors"] == []  # the broken one was never imported
    assert not names & {"gsm8k", "math", "backends"}
    proc = run_ssb("plugins", "--json", pythonpath=plugin_path, env={"SSB_LOAD_PLUGINS": ""})
    names = {p["name"] for p in json.loads(proc.stdout)["plugins"]}
    assert names == {"ssb.default_plugins.losses"}  # built-ins always load


def test_hook_that_raises_is_reported(tmp_path):
    root = make_dist(tmp_path / "site", "ssb-plugin-badhook", "badhook", "ssb_badhook",
                     """
                     from ssb.hookspecs import hookimpl
                     @hookimpl
                     def register_datasets(register):
                         register("not a DatasetLoader")
                     """)
    proc = run_ssb("plugins", "--json", pythonpath=root)
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    (err,) = [e for e in report["errors"] if e["name"] == "badhook"]
    assert "register_datasets failed" in err["error"] and "DatasetLoader" in err["error"]
    assert "badhook" not in {p["name"] for p in report["plugins"]}


def test_misspelled_hook_and_protocol_breaches_are_reported(tmp_path):
    root = make_dist(tmp_path / "site", "ssb-plugin-sloppy", "sloppy", "ssb_sloppy", """
        from ssb.hookspecs import hookimpl
        from ssb.records import Verdict
        from ssb.types import Loss

        @hookimpl
        def register_loss(register):  # misspelled: the hook is register_losses
            register(Loss("never", lambda inputs: 0.0))

        class LaxVerifier:  # no strict/timeout: would silently turn off curate's strict check
            domain = "lax"
            def extract(self, response):
                return response
            def verify(self, response, gold):
                return Verdict(extracted=response, correct=response == gold)

        @hookimpl
        def register_verifiers(register):
            register(LaxVerifier())
        """)
    make_dist(root, "ssb-plugin-impostor", "impostor", "ssb_impostor", """
        from ssb.hookspecs import hookimpl
        from ssb.types import BackendFactory

        @hookimpl
        def register_backends(register):  # a built-in name: refused, the built-in wins
            register(BackendFactory("llama.cpp", lambda model, **kw: None, "impostor"))
        """)
    report = json.loads(run_ssb("plugins", "--json", pythonpath=root).stdout)
    errors = [e["error"] for e in report["errors"] if e["name"] == "sloppy"]
    assert any("unknown hook 'register_loss'" in e and "register_losses" in e for e in errors)
    assert any("verify() must accept strict=, timeout=" in e for e in errors)
    assert "lax" not in report.get("backends", {})
    # The duplicate names both distributions; the built-in keeps the name.
    errors = [e["error"] for e in report["errors"] if e["name"] == "impostor"]
    assert any("duplicate backend 'llama.cpp' refused" in e and "softboot-backends" in e
               for e in errors), errors
    assert report["backends"]["llama.cpp"]["description"] != "impostor"
    human = run_ssb("plugins", pythonpath=root, env={"COLUMNS": "300"})
    assert "register_loss" in human.stdout


def test_allow_list_that_excludes_everything_says_so(plugin_path):
    proc = run_ssb("problems", "--dataset", "gsm8k", "--limit", "1", pythonpath=plugin_path,
                   env={"SSB_LOAD_PLUGINS": "nothing-installed"})
    assert proc.returncode == 2
    assert "SSB_LOAD_PLUGINS=nothing-installed excludes the installed plugin(s)" in proc.stderr
    assert "gsm8k" in proc.stderr


def test_version_and_help_list_commands():
    proc = run_ssb("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ssb ")
    help_text = run_ssb("--help").stdout
    for command in ("curate", "distill", "eval", "plugins", "problems", "verify", "generate"):
        assert command in help_text


def test_records_round_trip_and_errors():
    rollout = Rollout(text="so \\boxed{3}", num_tokens=5, finish_reason="stop", extracted="3",
                      correct=True)
    rec = CuratedRecord(
        id="p1", question="q", gold="3", dataset="gsm8k", domain="gsm8k", template="t@1",
        student_messages=[{"role": "user", "content": "q"}],
        teacher_messages=[{"role": "user", "content": "hinted q"}], solution="s",
        correct_rollout=rollout, wrong_rollout=rollout, rollout_answers=["3", None],
        rollout_correct=[True, False],
    )
    data = json.loads(json.dumps(rec.to_dict()))
    assert CuratedRecord.from_dict(data) == rec
    assert isinstance(CuratedRecord.from_dict(data).correct_rollout, Rollout)
    with pytest.raises(DataError, match="missing field 'gold'"):
        Problem.from_dict({"id": "x", "question": "q"})
    with pytest.raises(DataError, match="unknown field"):
        Problem.from_dict({"id": "x", "question": "q", "gold": "1", "colour": "red"})


def test_journal_survives_a_torn_tail(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.append({"id": 1})
        j.append({"id": 2})
    with open(path, "a") as f:
        f.write('{"id": 3, "tru')  # what a SIGKILL mid-write leaves
    assert [r["id"] for r in Journal(path).read()] == [1, 2]
    with Journal(path) as j:  # reopening cuts the torn line, so appends stay parseable
        j.append({"id": 3})
    assert [r["id"] for r in read_jsonl(path)] == [1, 2, 3]


def test_read_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{oops}\n')
    with pytest.raises(DataError) as info:
        list(read_jsonl(path))
    assert f"{path}:2" in str(info.value)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "out" / "x.json"
    atomic_write_json(path, {"v": 1})
    atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temp files left


def test_manifest_and_resume_guard(tmp_path):
    from ssb.stage import StageOutput, check_resume

    data = tmp_path / "in.jsonl"
    data.write_text("{}\n")
    identity = {"rollouts": 4, "seed": 1}
    config = {**identity, "api_key": "sk-secret", "workers": 2}
    with StageOutput(tmp_path, "curate", identity, config, inputs=[data], seed=1) as stage:
        stage.start_work()
        stage.finish()
    saved = json.loads((tmp_path / "manifest.json").read_text())
    RunManifest.from_dict({k: v for k, v in saved.items() if k != "identity"})
    assert saved["config"]["api_key"] == "<redacted>" and "sk-secret" not in json.dumps(saved)
    assert saved["inputs"][str(data)] == __import__("hashlib").sha256(b"{}\n").hexdigest()
    assert saved["versions"]["torch"] and saved["finished"]
    assert check_resume(tmp_path, "curate", identity, force=False) is True
    with pytest.raises(SsbError, match="rollouts: 4 -> 8"):
        check_resume(tmp_path, "curate", {**identity, "rollouts": 8}, force=False)
    assert check_resume(tmp_path, "curate", {**identity, "rollouts": 8}, force=True) is True
    with pytest.raises(SsbError, match="holds a `curate` run"):
        check_resume(tmp_path, "eval", identity, force=False)


def test_a_stage_that_fails_before_working_leaves_no_manifest(tmp_path):
    from ssb.stage import StageOutput

    with pytest.raises(SsbError, match="bad input"):
        with StageOutput(tmp_path, "curate", {"limit": 1}, {}):
            raise SsbError("bad input")
    assert not (tmp_path / "manifest.json").exists()  # the corrected command is not refused
    with StageOutput(tmp_path, "curate", {"limit": 2}, {}) as stage:
        stage.start_work()
    with pytest.raises(SsbError, match="crashed"):
        with StageOutput(tmp_path, "curate", {"limit": 2}, {}) as stage:
            stage.start_work()
            raise SsbError("crashed")
    assert (tmp_path / "manifest.json").exists()  # work was done: it stays for the resume


def test_config_file_keys_mirror_flags_and_flags_win(tmp_path, ssb_cli):
    """Every command, the non-stage ones too (``ssb problems`` here; issue 22: generate, verify,
    problems, export and eval compare were hand-written), reads --config through the one
    resolver: keys mirror the flags, the command's table wins over the top level, explicit
    flags win over both, and an unknown key is refused with a suggestion."""
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"#### {i}"}) + "\n"
                              for i in range(5)))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'dataset = "gsm8k"\nsource = "{source}"\nsplit = "test"\nlimit = 4\n'
                   '[problems]\nlimit = 3\n')
    code, out, err = ssb_cli("problems", "--config", str(cfg), "--json")
    assert code == 0, err
    assert [json.loads(line)["gold"] for line in out.splitlines()] == ["0", "1", "2"]
    code, out, err = ssb_cli("problems", "--config", str(cfg), "--json", "-n", "1")
    assert code == 0, err
    assert len(out.splitlines()) == 1
    cfg.write_text(f'dataset = "gsm8k"\nsource = "{source}"\nlimt = 2\n')
    code, _, err = ssb_cli("problems", "--config", str(cfg), "--json")
    assert code == 2 and "unknown key 'limt'" in err and "did you mean 'limit'" in err
