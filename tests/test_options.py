"""One config dataclass per stage: flags, TOML keys, presets, validation, resume identity and
secrets all come from field metadata (ssb.options), and the CLI is derived from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ssb.options import ConfigError, StageConfig, option, resolve


@dataclass
class Demo(StageConfig):
    COMMAND: ClassVar[str] = "demo"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"big": {"rollouts": 8, "lr": 1e-3}}

    out: Path = option(resume=False, help="where")
    rollouts: int = option(4, ge=2, help="K")
    lr: float = option(2e-4, gt=0, help="learning rate")
    mode: str = option("a", choices=("a", "b"), help="mode")
    limit: int | None = option(None, ge=1, help="limit")
    token: str | None = option(None, secret=True, help="a secret")
    threads: int = option(1, resume=False, help="speed only")


def test_resolution_order_defaults_preset_file_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('rollouts = 6\n[demo]\nmode = "b"\n')
    assert resolve(Demo, flags={"out": "x"}).rollouts == 4
    assert resolve(Demo, preset="big", flags={"out": "x"}).rollouts == 8
    r = resolve(Demo, preset="big", file=cfg, flags={"out": "x"})
    assert (r.rollouts, r.lr, r.mode) == (6, 1e-3, "b")  # file beats preset, table beats top
    r = resolve(Demo, preset="big", file=cfg, flags={"out": "x", "rollouts": 3})
    assert r.rollouts == 3 and isinstance(r.out, Path)


@pytest.mark.parametrize("flags, message", [
    ({"rollouts": 1}, "--rollouts must be >= 2, got 1"),
    ({"lr": float("nan")}, "--lr must be a finite number"),
    ({"lr": -1.0}, "--lr must be > 0, got -1.0"),
    ({"mode": "c"}, "--mode must be one of a, b, got 'c'"),
    ({"limit": 0}, "--limit must be >= 1, got 0"),
    ({"rollouts": "many"}, "--rollouts expects an integer, got 'many'"),
])
def test_bad_values_name_the_flag(flags, message):
    with pytest.raises(ConfigError) as info:
        resolve(Demo, flags={"out": "x", **flags})
    assert message in str(info.value)


def test_unknown_keys_missing_required_and_bad_files(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("rollout = 6\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown key 'rollout'"):
        resolve(Demo, file=cfg, flags={"out": "x"})
    with pytest.raises(ConfigError, match="needs --out"):
        resolve(Demo)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00rollouts")
    with pytest.raises(ConfigError, match="b.toml"):
        resolve(Demo, file=binary, flags={"out": "x"})
    with pytest.raises(ConfigError, match="is a directory"):
        resolve(Demo, file=tmp_path, flags={"out": "x"})
    with pytest.raises(ConfigError, match="unknown preset 'small'.*known: big"):
        resolve(Demo, preset="small", flags={"out": "x"})


def test_identity_excludes_volatile_and_secret_manifest_excludes_secret():
    cfg = resolve(Demo, flags={"out": "x", "token": "sk-123456", "threads": 8})
    assert "threads" not in cfg.identity() and "out" not in cfg.identity()
    assert "token" not in cfg.identity() and "token" not in cfg.manifest()
    assert cfg.manifest()["threads"] == 8
    assert cfg.to_dict()["token"] == "sk-123456"  # only for handing to a child process
    assert Demo.from_mapping(cfg.to_dict()) == cfg


def test_stage_configs_are_derived_into_the_cli(ssb_cli, monkeypatch):
    """Every field of every stage config is a flag of its command, with its help."""
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps long flags in narrow terminals
    from ssb.stages.distill.trainer import DistillConfig
    from ssb.stages.curate import CurateConfig
    from ssb.stages.evaluate import EvalConfig
    from ssb.stages.run import RunConfig

    for command, cls in (("curate", CurateConfig), ("distill", DistillConfig),
                         ("run", RunConfig)):
        code, out, _ = ssb_cli(command, "--help")
        assert code == 0
        flags = help_flags(out)
        for spec in cls.specs():
            # Whole flags: `--lr` is not found inside `--lr-scheduler`.
            assert spec.flag in flags, f"ssb {command} --help lacks {spec.flag}"
    code, out, _ = ssb_cli("eval", "--help")
    assert code == 0
    flags = help_flags(out)
    assert all(s.flag in flags for s in EvalConfig.specs())


def test_every_command_takes_exactly_its_config_class_flags():
    """Issue 22: generate, verify, problems, export and eval compare hand-wrote their typer
    options; now each command's options are its config class's fields (with their short
    names), ``--config``, and the display-only switches the command adds: nothing else."""
    import typer

    from ssb.cli import build_app
    from ssb.commands.eval import CompareConfig
    from ssb.commands.export import ExportConfig
    from ssb.commands.generate import GenerateConfig
    from ssb.commands.problems import ProblemsConfig
    from ssb.commands.verify import VerifyConfig

    root = typer.main.get_command(build_app())
    cases = [(("generate",), GenerateConfig, {"--json"}), (("verify",), VerifyConfig, set()),
             (("problems",), ProblemsConfig, {"--json"}), (("export",), ExportConfig, {"--json"}),
             (("eval", "compare"), CompareConfig, {"--json"})]
    for path, cls, display in cases:
        command = root
        for name in path:
            command = command.commands[name]
        options = {o for p in command.params for o in p.opts if o.startswith("-")}
        options -= {"--help", "-h"}
        declared = {"--config"} | display
        for spec in cls.specs():
            declared |= {spec.flag, *([spec.short] if spec.short else [])}
        bools = {o for p in command.params for o in p.secondary_opts}
        assert options == declared, (path, options ^ declared)
        assert all(b.startswith("--no-") for b in bools), path


def help_flags(text: str) -> set[str]:
    """The long flags a help screen shows, as whole words (``--x/--no-x`` gives both)."""
    import re

    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*(?![\w…-])", text))


def test_help_flags_are_whole_words():
    screen = "│ --lr-scheduler  <str>  ... │ --force --no-force <bool> │ see --lr-sched… │"
    assert help_flags(screen) == {"--lr-scheduler", "--force", "--no-force"}
    assert "--lr" not in help_flags(screen)


@pytest.mark.parametrize("args, message", [
    (["--lora-r", "0"], "--lora-r must be >= 1"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--lora-dropout", "2"], "--lora-dropout must be < 1"),
    (["--lr-scheduler", "sideways"], "--lr-scheduler must be one of"),
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--temperature", "0"], "--temperature must be > 0"),
    (["--temperature", "-1"], "--temperature must be > 0"),
    (["--loss", "kl=1", "--teacher", "none"], "--loss kl needs a teacher"),
])
def test_distill_rejects_bad_settings_before_writing_anything(tmp_path, ssb_cli, args, message):
    out = tmp_path / "d"
    curated = tmp_path / "c.jsonl"
    curated.write_text("")
    code, _, err = ssb_cli("distill", "--curated", str(curated), "--model", "default",
                           "--out", str(out), *args)
    assert code == 2 and message in err, err
    assert not (out / "manifest.json").exists()


def test_curate_rejects_limit_zero_and_unknown_backend_options(tmp_path, ssb_cli):
    base = ["curate", "--domain", "arithmetic", "--backend", "llama.cpp", "--model", "default",
            "--out", str(tmp_path / "c")]
    code, _, err = ssb_cli(*base, "--limit", "0")
    assert code == 2 and "--limit must be >= 1" in err
    code, _, err = ssb_cli(*base, "-B", "n_thread=2")
    assert code == 2 and "no option 'n_thread'" in err and "n_threads" in err
    code, _, err = ssb_cli(*base, "-B", "n_threads=two")
    assert code == 2 and "n_threads expects int" in err
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_backends_declare_options_and_capabilities():
    from ssb.plugins import get_registry
    from ssb.types import ADAPTER_GGUF, ADAPTER_PEFT

    reg = get_registry()
    llama, hf = reg.backend("llama.cpp"), reg.backend("transformers")
    assert ADAPTER_GGUF in llama.adapter_formats and not llama.loads_hf_dirs
    assert ADAPTER_PEFT in hf.adapter_formats and hf.loads_hf_dirs
    opts = llama.parse_options(["n_threads=2", "lora_scale=0.5"])
    assert opts == {"n_threads": 2, "lora_scale": 0.5}
    assert llama.identity_options(opts) == {"lora_scale": 0.5}  # threads are volatile
    openai = reg.backend("openai")
    parsed = openai.parse_options({"api_key": "sk-abcdef", "timeout": "30"})
    assert openai.public_options(parsed) == {"timeout": 30.0}
    report = reg.report()["backends"]["llama.cpp"]
    assert {o["name"] for o in report["options"]} >= {"n_threads", "n_ctx"}


def test_plugins_lists_backend_options(ssb_cli):
    code, out, _ = ssb_cli("plugins", "--json")
    assert code == 0
    data = json.loads(out)
    assert "n_threads" in {o["name"] for o in data["backends"]["llama.cpp"]["options"]}


def test_backend_options_are_declared_once():
    """Each backend's -B options: the schema in ssb_backends/__init__.py is the declaration; the
    module's OPTIONS is read from it, and the constructor takes exactly those, with the same
    defaults (a drift in either fails here)."""
    import importlib
    import inspect

    from ssb_backends import _BACKENDS, option_names

    classes = {"transformers": "TransformersBackend", "llama.cpp": "LlamaCppBackend",
               "openai": "OpenAICompatBackend", "vllm": "VLLMBackend"}
    assert set(classes) == set(_BACKENDS)
    for name, spec in _BACKENDS.items():
        module = importlib.import_module(spec["module"])
        assert module.OPTIONS == option_names(name), name
        params = inspect.signature(getattr(module, classes[name]).__init__).parameters
        taken = {p.name: p.default for p in params.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY}
        declared = {o.name: o.default for o in spec["options"]}
        assert taken == declared, name
