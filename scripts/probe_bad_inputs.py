"""Probe ssb with bad inputs, each as a real ``ssb`` process, and classify every outcome.

A bad input is handled *cleanly* when the process

* exits with status 2,
* prints exactly one line on stderr besides progress lines, starting with ``error:``,
* prints no traceback, and
* leaves a fresh ``--out`` without ``manifest.json``, so the corrected command is not refused as
  "started with a different config" (not checked for a full disk, where work had started and is
  kept on purpose).

The cases are issue 13's list (distill settings, malformed curated records, adapters, export
targets, unreachable models, a full disk, mismatched runs for ``eval compare``) plus the
neighbouring inputs of each.  Full-disk cases run on a real tmpfs of a few KiB in a private mount
namespace (``ssb.testing.run_on_small_disk``); where the machine allows no namespace they are
reported as skipped, not counted.  No network is needed: hub cases either find the hub
unreachable or ask it about a repository that does not exist.

    python scripts/probe_bad_inputs.py                 # all cases, a table, N clean / N tried
    python scripts/probe_bad_inputs.py --json out.json --jobs 2
    python scripts/probe_bad_inputs.py --only distill-lora-r-0 eval-adapter-truncated

``tests/reliability/test_bad_inputs.py`` runs every case and requires all of them clean.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(r"^\[[^\]]+\] \d+/(\d+|\?) ")  # the line renderer's progress lines


# -- fixtures -------------------------------------------------------------------------------------

SYSTEM = "You are a helpful math tutor. Put the final answer in \\boxed{}."


def curated_record(i: int, template: str = "probe@1") -> dict:
    """A well-formed curated record (its teacher view carries the hint)."""
    question = f"Natalia sold {10 + i} clips in April and half as many in May. How many clips?"
    answer = 10 + i + (10 + i) // 2
    solution = f"In May she sold {(10 + i) // 2}. Altogether \\boxed{{{answer}}}."
    student = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    teacher = [{"role": "system", "content": SYSTEM},
               {"role": "user", "content": f"{question}\nA correct response: {solution}"}]
    rollout = {"text": solution, "num_tokens": 10, "finish_reason": "stop",
               "extracted": str(answer), "correct": True}
    wrong = {"text": "13", "num_tokens": 1, "finish_reason": "stop", "extracted": "13",
             "correct": False}
    return {"id": f"p{i}", "question": question, "gold": str(answer), "dataset": "toy",
            "domain": "gsm8k", "template": template, "student_messages": student,
            "teacher_messages": teacher, "solution": solution, "correct_rollout": rollout,
            "wrong_rollout": wrong, "rollout_answers": [str(answer), "13"],
            "rollout_correct": [True, False], "metadata": {}}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_gsm8k(path: Path, questions: list[str]) -> Path:
    return write_jsonl(path, [{"question": q, "answer": f"Work.\n#### {n}"}
                              for n, q in enumerate(questions)])


def build_fixtures(work: Path) -> dict[str, Path]:
    """Tiny model, curated sets (good and bad), a trained-shape adapter and broken copies."""
    import shutil

    from ssb.models import quiet_library_notices
    from ssb.testing import build_tiny_model

    quiet_library_notices()
    work.mkdir(parents=True, exist_ok=True)
    fx: dict[str, Path] = {"work": work}
    fx["model"] = work / "tiny"
    if not (fx["model"] / "config.json").exists():
        build_tiny_model(fx["model"])
    good = [curated_record(i) for i in range(4)]
    fx["curated"] = write_jsonl(work / "curated" / "curated.jsonl", good).parent
    bad = [dict(r) for r in good]
    bad[1] = {**bad[1], "student_messages": "just a string"}
    fx["curated_string_messages"] = write_jsonl(work / "cur-string" / "curated.jsonl", bad).parent
    bad = [dict(r) for r in good]
    bad[2] = {**bad[2], "teacher_messages": [{"role": "user"}]}
    fx["curated_bad_message"] = write_jsonl(work / "cur-badmsg" / "curated.jsonl", bad).parent
    mixed = good[:2] + [curated_record(i, template="other@2") for i in range(2, 4)]
    fx["curated_mixed"] = write_jsonl(work / "cur-mixed" / "curated.jsonl", mixed).parent
    torn = work / "cur-json" / "curated.jsonl"
    write_jsonl(torn, good)
    with open(torn, "a") as f:
        f.write('{"id": "p9", "question": \n')
    fx["curated_bad_json"] = torn.parent
    (work / "binary.toml").write_bytes(bytes(range(256)) * 4)
    fx["binary_toml"] = work / "binary.toml"
    fx["nomodel_dir"] = work / "not-a-model"
    fx["nomodel_dir"].mkdir(exist_ok=True)
    (fx["nomodel_dir"] / "README").write_text("no config.json here\n")

    fx["adapter"] = work / "adapter"
    if not (fx["adapter"] / "adapter_model.safetensors").exists():
        _save_adapter(fx["model"], fx["adapter"])
    truncated = work / "adapter-truncated"
    shutil.copytree(fx["adapter"], truncated, dirs_exist_ok=True)
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes((fx["adapter"] / "adapter_model.safetensors").read_bytes()[:-1000])
    fx["adapter_truncated"] = truncated
    rank = work / "adapter-rank"
    shutil.copytree(fx["adapter"], rank, dirs_exist_ok=True)
    cfg = json.loads((rank / "adapter_config.json").read_text())
    cfg["r"] = 16  # the tensors have rank 4
    (rank / "adapter_config.json").write_text(json.dumps(cfg))
    fx["adapter_rank"] = rank
    fx["gguf_dir"] = work / "gguf-dir"
    fx["gguf_dir"].mkdir(exist_ok=True)

    questions = ["What is 2 + 3?", "What is 4 * 5?", "What is 9 - 7?"]
    fx["source_a"] = write_gsm8k(work / "src-a.jsonl", questions)
    fx["source_b"] = write_gsm8k(work / "src-b.jsonl", [q.replace("What", "Compute")
                                                       for q in questions])
    build_issue21_fixtures(fx)
    return fx


def _save_adapter(model_dir: Path, out: Path) -> None:
    """A rank-4 LoRA adapter on the tiny model, saved by peft exactly as distill saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM", bias="none", init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(str(out), safe_serialization=True)


def eval_run(fx: dict[str, Path], source: Path, out: Path) -> list[str]:
    """argv of a tiny greedy gsm8k eval over ``source`` (builds a finished run for compare)."""
    return ["eval", "--dataset", "gsm8k", "--source", str(source), "--split", "test",
            "--backend", "transformers", "--model", str(fx["model"]), "--max-tokens", "4",
            "--no-progress", "--out", str(out)]


# -- cases ----------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    group: str  # the command probed
    argv: Callable[[dict[str, Path], Path], list[str]]  # (fixtures, fresh out dir) -> ssb argv
    env: dict[str, str] = field(default_factory=dict)
    small_disk_kib: int = 0  # > 0: run with the out dir on a tmpfs of this size
    prepare: Callable[[dict[str, Path], Path], None] | None = None  # e.g. finished runs
    check_manifest: bool = True  # a fresh out dir must hold no manifest afterwards
    expect: str = ""  # a regex the error line must match (the file:line or option it names)
    timeout: float = 300  # longer: the case hung
    memory_mb: int = 0  # > 0: the process's address space is capped (runaway memory fails)
    # (rc, stdout, stderr) -> (clean, lines, reason), for a case whose outcome is not an error
    custom: Callable[[int | None, str, str], tuple[bool, list[str], str]] | None = None


def _distill(fx: dict[str, Path], out: Path, *extra: str, curated: str = "curated") -> list[str]:
    return ["distill", "--curated", str(fx[curated]), "--model", str(fx["model"]),
            "--out", str(out), "--lora-r", "4", "--max-length", "256", "--max-steps", "2",
            "--no-progress", *extra]


def _curate(fx: dict[str, Path], out: Path, *extra: str, model: str | None = None) -> list[str]:
    return ["curate", "--domain", "arithmetic", "--backend", "transformers",
            "--model", model or str(fx["model"]), "--limit", "4", "--rollouts", "2",
            "--max-tokens", "48", "--batch-size", "2", "--no-progress", "--out", str(out),
            *extra]


def _eval(fx: dict[str, Path], out: Path, *extra: str, model: str | None = None) -> list[str]:
    return ["eval", "--dataset", "arithmetic", "--backend", "transformers",
            "--model", model or str(fx["model"]), "--limit", "6", "--max-tokens", "64",
            "--batch-size", "1", "--no-progress", "--out", str(out), *extra]


def _export(fx: dict[str, Path], adapter: str, gguf: Path) -> list[str]:
    return ["export", "--adapter", str(fx[adapter]), "--gguf", str(gguf),
            "--base", str(fx["model"])]


def _finished_runs(fx: dict[str, Path], out: Path) -> None:
    """Two finished evals with the same ids over different questions (for eval compare)."""
    for name, source in (("a", fx["source_a"]), ("b", fx["source_b"])):
        if not (out / name / "summary.json").exists():
            subprocess.run([sys.executable, "-m", "ssb", *eval_run(fx, source, out / name)],
                           check=True, capture_output=True, env=_env({}))


HUB_MISSING = "ssb-probe-nobody/no-such-model-7f3a"
OFFLINE = {"HF_HUB_OFFLINE": "1"}

CASES: list[Case] = [
    # distill settings (issue 13: tracebacks or silently accepted before)
    Case("distill-lora-r-0", "distill", lambda fx, o: _distill(fx, o, "--lora-r", "0")),
    Case("distill-lr-nan", "distill", lambda fx, o: _distill(fx, o, "--lr", "nan")),
    Case("distill-lr-negative", "distill", lambda fx, o: _distill(fx, o, "--lr", "-1")),
    Case("distill-batch-size-0", "distill", lambda fx, o: _distill(fx, o, "--batch-size", "0")),
    Case("distill-lora-dropout-2", "distill",
         lambda fx, o: _distill(fx, o, "--lora-dropout", "2")),
    Case("distill-target-modules-unknown", "distill",
         lambda fx, o: _distill(fx, o, "--target-modules", "no_such_proj")),
    Case("distill-lr-scheduler-unknown", "distill",
         lambda fx, o: _distill(fx, o, "--lr-scheduler", "sometimes")),
    Case("distill-epochs-0", "distill", lambda fx, o: _distill(fx, o, "--epochs", "0")),
    Case("distill-temperature-0", "distill", lambda fx, o: _distill(fx, o, "--temperature", "0")),
    Case("distill-temperature-negative", "distill",
         lambda fx, o: _distill(fx, o, "--temperature", "-1")),
    Case("distill-config-binary-toml", "distill",
         lambda fx, o: _distill(fx, o, "--config", str(fx["binary_toml"]))),
    Case("distill-curated-messages-string", "distill",
         lambda fx, o: _distill(fx, o, curated="curated_string_messages")),
    Case("distill-curated-message-without-content", "distill",
         lambda fx, o: _distill(fx, o, curated="curated_bad_message")),
    Case("distill-curated-mixed-templates", "distill",
         lambda fx, o: _distill(fx, o, curated="curated_mixed")),
    Case("distill-curated-invalid-json", "distill",
         lambda fx, o: _distill(fx, o, curated="curated_bad_json")),
    Case("distill-curated-missing", "distill",
         lambda fx, o: ["distill", "--curated", str(fx["work"] / "nope"), "--model",
                        str(fx["model"]), "--out", str(o)]),
    Case("distill-model-dir-without-config", "distill",
         lambda fx, o: ["distill", "--curated", str(fx["curated"]), "--model",
                        str(fx["nomodel_dir"]), "--out", str(o), "--max-length", "256"]),
    Case("distill-model-hub-offline", "distill",
         lambda fx, o: ["distill", "--curated", str(fx["curated"]), "--model", HUB_MISSING,
                        "--out", str(o), "--max-length", "256"], env=OFFLINE),
    Case("teacher-logits-curated-messages-string", "teacher-logits",
         lambda fx, o: ["teacher-logits", "--curated", str(fx["curated_string_messages"]),
                        "--model", str(fx["model"]), "--out", str(o), "--no-progress"]),
    Case("teacher-logits-top-k-0", "teacher-logits",
         lambda fx, o: ["teacher-logits", "--curated", str(fx["curated"]), "--model",
                        str(fx["model"]), "--out", str(o), "--top-k", "0"]),
    # curate
    Case("curate-limit-0", "curate", lambda fx, o: _curate(fx, o, "--limit", "0")),
    Case("curate-backend-option-unknown", "curate",
         lambda fx, o: _curate(fx, o, "-B", "no_such_option=1")),
    Case("curate-backend-option-miscased", "curate",
         lambda fx, o: _curate(fx, o, "-B", "BATCH_SIZE=2")),
    Case("curate-domain-unknown", "curate",
         lambda fx, o: _curate(fx, o)[:2] + ["no-such-domain"] + _curate(fx, o)[3:]),
    Case("curate-model-hub-unreachable", "curate",
         lambda fx, o: _curate(fx, o, model=HUB_MISSING)),
    Case("curate-model-path-missing", "curate",
         lambda fx, o: _curate(fx, o, model=str(fx["work"] / "missing-model"))),
    # eval
    Case("eval-adapter-truncated", "eval",
         lambda fx, o: _eval(fx, o, "--adapter", str(fx["adapter_truncated"]))),
    Case("eval-adapter-rank-mismatch", "eval",
         lambda fx, o: _eval(fx, o, "--adapter", str(fx["adapter_rank"]))),
    Case("eval-adapter-missing", "eval",
         lambda fx, o: _eval(fx, o, "--adapter", str(fx["work"] / "no-adapter"))),
    Case("eval-model-hub-offline", "eval", lambda fx, o: _eval(fx, o, model=HUB_MISSING),
         env=OFFLINE),
    Case("eval-model-hub-unreachable", "eval", lambda fx, o: _eval(fx, o, model=HUB_MISSING)),
    Case("eval-limit-0", "eval", lambda fx, o: _eval(fx, o, "--limit", "0")),
    Case("eval-dataset-unknown", "eval",
         lambda fx, o: _eval(fx, o)[:2] + ["no-such-dataset"] + _eval(fx, o)[3:]),
    Case("eval-compare-same-ids-other-questions", "eval compare",
         lambda fx, o: ["eval", "compare", str(o / "a"), str(o / "b")],
         prepare=_finished_runs, check_manifest=False),
    Case("eval-compare-not-a-run", "eval compare",
         lambda fx, o: ["eval", "compare", str(fx["curated"]), str(fx["work"])],
         check_manifest=False),
    # export
    Case("export-gguf-is-a-directory", "export",
         lambda fx, o: _export(fx, "adapter", fx["gguf_dir"])),
    Case("export-config-rank-disagrees", "export",
         lambda fx, o: _export(fx, "adapter_rank", o / "a.gguf")),
    Case("export-adapter-truncated", "export",
         lambda fx, o: _export(fx, "adapter_truncated", o / "a.gguf")),
    Case("export-adapter-not-peft", "export",
         lambda fx, o: _export(fx, "curated", o / "a.gguf")),
    # a full disk (a real tmpfs of a few KiB): one line naming the path, work kept
    Case("curate-disk-full", "curate", lambda fx, o: _curate(fx, o), small_disk_kib=12,
         check_manifest=False),
    Case("eval-disk-full", "eval", lambda fx, o: _eval(fx, o), small_disk_kib=8,
         check_manifest=False),
    Case("distill-disk-full", "distill",
         lambda fx, o: _distill(fx, o, "--save-steps", "1", "--max-steps", "4"),
         small_disk_kib=200, check_manifest=False),
    Case("export-disk-full", "export", lambda fx, o: _export(fx, "adapter", o / "a.gguf"),
         small_disk_kib=8, check_manifest=False),  # the GGUF is ~15 KiB
]


# -- issue 21, section 3: bad input by class ------------------------------------------------------
# Each class has one mechanism that makes it impossible; these cases probe every class through a
# real `ssb` process.  `expect` is a pattern the one error line must match (it names the file:line
# or the option); `timeout` catches a hang; a plugin case reads `ssb plugins --json` instead.

DEEP = 100_000  # brackets: far past Python's recursion limit
HANG_S = 300  # a case that takes longer hung (a distill case took up to ~250 s on the loaded 2-core box)
BIG_ROW_MB = 17  # one JSONL row just over the 16 MiB line bound (unbounded: GBs of RSS)


def _deep_row(key: str = "question") -> str:
    return '{"%s": %s%s, "answer": "#### 1"}\n' % (key, "[" * DEEP, "]" * DEEP)


def build_issue21_fixtures(fx: dict[str, Path]) -> None:
    work = fx["work"] / "i21"
    work.mkdir(parents=True, exist_ok=True)
    good = [curated_record(i) for i in range(4)]

    def curated(name: str, rows: list, raw_tail: str = "") -> None:
        path = write_jsonl(work / name / "curated.jsonl", rows)
        if raw_tail:
            with open(path, "a") as f:
                f.write(raw_tail)
        fx[f"i21_{name}"] = path.parent

    # nesting and size
    (work / "deep.jsonl").write_text(_deep_row())
    fx["i21_deep_jsonl"] = work / "deep.jsonl"
    (work / "deep500.jsonl").write_text('{"question": %s"x"%s, "answer": "#### 1"}\n'
                                        % ("[" * 500, "]" * 500))
    fx["i21_deep500_jsonl"] = work / "deep500.jsonl"
    curated("cur-deep", good[:2], '{"id": %s1%s}\n' % ("[" * DEEP, "]" * DEEP))
    with open(work / "big.jsonl", "w") as f:
        f.write(json.dumps({"question": "x" * (BIG_ROW_MB << 20), "answer": "#### 1"}) + "\n")
    fx["i21_big_jsonl"] = work / "big.jsonl"
    (work / "verify-deep.jsonl").write_text('{"response": "1", "gold": %s"1"%s}\n'
                                            % ("[" * DEEP, "]" * DEEP))
    fx["i21_verify_deep"] = work / "verify-deep.jsonl"
    deep_toml = work / "deep.toml"
    deep_toml.write_text("[distill]\nlr = " + "[" * 5000 + "]" * 5000 + "\n")
    fx["i21_deep_toml"] = deep_toml
    # curated records that disagree with themselves
    r = [dict(x) for x in good]
    r[1] = {**r[1], "teacher_messages": [{"role": "system", "content": SYSTEM},
                                         {"role": "user", "content": "What is 7 * 8? A correct "
                                          "response: 56"}]}
    curated("cur-views-disagree", r)
    r = [dict(x) for x in good]
    r[2] = {**r[2], "student_messages": [{"role": "robot", "content": SYSTEM},
                                         r[2]["student_messages"][1]]}
    curated("cur-role", r)
    r = [dict(x) for x in good]
    r[1] = {**r[1], "teacher_messages": r[1]["teacher_messages"]
            + [{"role": "assistant", "content": "Sure."}]}
    curated("cur-teacher-ends-assistant", r)
    r = [dict(x) for x in good]
    r[3] = {**r[3], "solution": r[3]["solution"] + "<|im_end|>\n<|im_start|>user\nmore"}
    curated("cur-special-tokens", r)
    r = [dict(x) for x in good]
    r[2] = {**r[2], "id": r[0]["id"]}
    curated("cur-duplicate-id", r)
    r = [dict(x) for x in good]
    r[1] = {**r[1], "solution": "   "}
    curated("cur-empty-solution", r)
    # files that are not files
    fifo = work / "fifo.jsonl"
    if not fifo.exists():
        os.mkfifo(fifo)
    fx["i21_fifo"] = fifo
    fifo_toml = work / "fifo.toml"
    if not fifo_toml.exists():
        os.mkfifo(fifo_toml)
    fx["i21_fifo_toml"] = fifo_toml
    (work / "a-file").write_text("not a directory\n")
    fx["i21_file"] = work / "a-file"
    for a, b in (("loop-a", "loop-b"), ("loop-b", "loop-a")):
        if not (work / a).is_symlink():
            (work / a).symlink_to(work / b)
    fx["i21_loop"] = work / "loop-a"
    (work / "not-gguf.gguf").write_bytes(b"this is not a GGUF file\n" * 8)
    fx["i21_not_gguf"] = work / "not-gguf.gguf"
    # TOML values of the wrong shape
    for name, text in (("toml-device-list", '[curate]\nbackend-opt = {device = ["cpu"]}\n'),
                       ("toml-max-tokens-list", "max_tokens = [1, 2]\n"),
                       ("toml-filter-table", '[eval]\nfilter = {n = {a = 1}}\n')):
        (work / f"{name}.toml").write_text(text)
        fx[f"i21_{name}"] = work / f"{name}.toml"
    # a plugin that registers a built-in's name in another case and one prompt id twice
    plug = work / "plugin"
    (plug / "ssbprobe_plugin-0.1.dist-info").mkdir(parents=True, exist_ok=True)
    (plug / "ssbprobe_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ssbprobe-plugin\nVersion: 0.1\n")
    (plug / "ssbprobe_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[ssb]\nssbprobe = ssbprobe_plugin\n")
    (plug / "ssbprobe_plugin.py").write_text(
        "from ssb.hookspecs import hookimpl\n"
        "from ssb.types import BackendFactory, DatasetLoader\n"
        "from ssb.prompts import make_template\n"
        "def _none(*a, **k):\n    raise RuntimeError('never loaded')\n"
        "@hookimpl\ndef register_backends(register):\n"
        "    register(BackendFactory(name=' Transformers', create=_none))\n"
        "@hookimpl\ndef register_datasets(register):\n"
        "    register(DatasetLoader(name='GSM8K', load=_none, domain='gsm8k'))\n"
        "@hookimpl\ndef register_prompts(register):\n"
        "    register(make_template('prose', '1', 'arithmetic'))\n")
    fx["i21_plugin_path"] = plug
    fx["i21_plugin_dup_prompt"] = plug


def _i21_runs(fx: dict[str, Path]) -> Path:
    return fx["work"] / "i21" / "runs"


def _i21_compare_dup(fx: dict[str, Path], _out: Path) -> None:
    """Finished runs (shared by the compare cases): ``a``, a copy ``dup`` whose results.jsonl
    holds one id twice, and a copy ``deep`` whose summary.json nests past the recursion limit."""
    import shutil

    out = _i21_runs(fx)
    _finished_runs(fx, out)
    dup = out / "dup"
    if not (dup / "summary.json").exists():
        shutil.copytree(out / "a", dup, dirs_exist_ok=True)
        rows = (dup / "results.jsonl").read_text().splitlines(keepends=True)
        with open(dup / "results.jsonl", "a") as f:
            f.write(rows[0])
    deep = out / "deep"
    if not (deep / "summary.json").exists():
        shutil.copytree(out / "a", deep, dirs_exist_ok=True)
        (deep / "summary.json").write_text("[" * DEEP + "]" * DEEP)


def _i21_started(fx: dict[str, Path], out: Path) -> None:
    """A finished distill in ``out`` (for a multi-line refusal: a changed config)."""
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "ssb", *_distill(fx, out, "--max-steps", "1")],
                       check=True, capture_output=True, env=_env({}))


def _plugins_refused(rc: int | None, stdout: str, stderr: str) -> tuple[bool, list[str], str]:
    """``ssb plugins --json`` with the probe plugin: its look-alike names (`` Transformers``,
    ``GSM8K``) and its second ``prose@1`` for arithmetic are refused, by name, and the built-ins
    keep theirs."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return False, stderr.splitlines()[-3:], f"exit {rc}, no JSON"
    errors = [e["error"] for e in data.get("errors", []) if e.get("name") == "ssbprobe"]
    backends = set(data.get("backends", {}))
    if rc != 0 or " Transformers" in backends or len(errors) < 3:
        return False, errors, f"look-alike names accepted (errors: {errors})"
    return True, errors, ""


def _gen(fx: dict[str, Path], *extra: str) -> list[str]:
    return ["generate", "--backend", "transformers", "--model", str(fx["model"]), "--prompt",
            "What is 2 + 3?", "--max-tokens", "4", *extra]


def _problems(source: str, *extra: str, dataset: str = "gsm8k") -> list[str]:
    return ["problems", "--dataset", dataset, "--source", source, "--split", "test", *extra]


_PLUGIN_ENV = "ssbprobe"  # added to SSB_LOAD_PLUGINS by the plugin cases
FILE_LINE = r"\.jsonl:\d+: "

ISSUE21_CASES: list[Case] = [
    # tracebacks: recursion on deeply nested JSON, in every reader
    Case("i21-dataset-deep-json", "problems",
         lambda fx, o: _problems(str(fx["i21_deep_jsonl"])), expect=FILE_LINE),
    Case("i21-dataset-deep500-json", "eval",
         lambda fx, o: ["eval", "--dataset", "gsm8k", "--source", str(fx["i21_deep500_jsonl"]),
                        "--split", "test", "--backend", "transformers", "--model",
                        str(fx["model"]), "--out", str(o), "--no-progress"], expect=FILE_LINE),
    Case("i21-curated-deep-json", "distill",
         lambda fx, o: _distill(fx, o, curated="i21_cur-deep"), expect=FILE_LINE),
    Case("i21-verify-input-deep-json", "verify",
         lambda fx, o: ["verify", "--domain", "gsm8k", "--input", str(fx["i21_verify_deep"])],
         expect=FILE_LINE),
    Case("i21-compare-summary-deep-json", "eval compare",
         lambda fx, o: ["eval", "compare", str(_i21_runs(fx) / "a"), str(_i21_runs(fx) / "deep")],
         prepare=_i21_compare_dup, check_manifest=False, expect=r"summary\.json"),
    Case("i21-config-deep-toml", "distill",
         lambda fx, o: _distill(fx, o, "--config", str(fx["i21_deep_toml"])),
         expect=r"deep\.toml"),
    # tracebacks: --report-to
    Case("i21-report-to-unknown", "distill",
         lambda fx, o: _distill(fx, o, "--report-to", "nosuch"), expect="--report-to"),
    Case("i21-report-to-unavailable", "distill",
         lambda fx, o: _distill(fx, o, "--report-to", "wandb"), expect="--report-to|wandb"),
    # tracebacks: a backend option with the right name and a wrong value
    Case("i21-backend-device-banana", "generate",
         lambda fx, o: _gen(fx, "-B", "device=banana"), expect="device"),
    Case("i21-backend-device-bad-index", "curate",
         lambda fx, o: _curate(fx, o, "-B", "device=cuda:x"), expect="device"),
    Case("i21-backend-dtype-banana", "eval",
         lambda fx, o: _eval(fx, o, "-B", "dtype=banana"), expect="dtype"),
    # tracebacks: TOML values of the wrong shape
    Case("i21-toml-backend-opt-list", "curate",
         lambda fx, o: _curate(fx, o, "--config", str(fx["i21_toml-device-list"])),
         expect="device"),
    Case("i21-toml-max-tokens-list", "generate",
         lambda fx, o: _gen(fx, "--config", str(fx["i21_toml-max-tokens-list"])),
         expect="max.tokens"),
    Case("i21-toml-filter-table", "eval",
         lambda fx, o: _eval(fx, o, "--config", str(fx["i21_toml-filter-table"])),
         expect="filter"),
    # tracebacks: an --out that cannot be a directory
    Case("i21-out-is-a-file", "distill",
         lambda fx, o: _distill(fx, fx["i21_file"]), check_manifest=False, expect="--out"),
    Case("i21-out-under-a-file", "curate",
         lambda fx, o: _curate(fx, fx["i21_file"] / "sub"), check_manifest=False,
         expect="--out"),
    Case("i21-out-symlink-loop", "eval",
         lambda fx, o: _eval(fx, fx["i21_loop"]), check_manifest=False, expect="--out"),
    # tracebacks and hangs: inputs that are FIFOs or /proc files
    Case("i21-curated-fifo", "distill",
         lambda fx, o: _distill(fx, o)[:2] + [str(fx["i21_fifo"])] + _distill(fx, o)[3:],
         timeout=HANG_S, expect="fifo"),
    Case("i21-verify-input-fifo", "verify",
         lambda fx, o: ["verify", "--domain", "gsm8k", "--input", str(fx["i21_fifo"])],
         timeout=HANG_S, expect="fifo"),
    Case("i21-dataset-fifo", "eval",
         lambda fx, o: ["eval", "--dataset", "gsm8k", "--source", str(fx["i21_fifo"]),
                        "--split", "test", "--backend", "transformers", "--model",
                        str(fx["model"]), "--out", str(o), "--no-progress"],
         timeout=HANG_S, expect="fifo"),
    Case("i21-verify-input-proc", "verify",
         lambda fx, o: ["verify", "--domain", "gsm8k", "--input", "/proc/self/environ"],
         timeout=HANG_S, expect="/proc"),
    Case("i21-curated-proc", "distill",
         lambda fx, o: _distill(fx, o)[:2] + ["/proc/self/mounts"] + _distill(fx, o)[3:],
         timeout=HANG_S, expect="/proc"),
    # statistics of absurd size
    Case("i21-compare-resamples-huge", "eval compare",
         lambda fx, o: ["eval", "compare", str(_i21_runs(fx) / "a"), str(_i21_runs(fx) / "dup"),
                        "--resamples", str(10 ** 15)],
         prepare=_i21_compare_dup, check_manifest=False, expect="--resamples"),
    Case("i21-compare-resamples-negative", "eval compare",
         lambda fx, o: ["eval", "compare", str(_i21_runs(fx) / "a"), str(_i21_runs(fx) / "dup"),
                        "--resamples", "-5"],
         prepare=_i21_compare_dup, check_manifest=False, expect="--resamples"),
    # export: a base that is not GGUF, a target that cannot be written
    Case("i21-export-base-not-gguf", "export",
         lambda fx, o: ["export", "--adapter", str(fx["adapter"]), "--gguf", str(o / "a.gguf"),
                        "--base", str(fx["i21_not_gguf"])], expect="not-gguf"),
    Case("i21-export-target-under-file", "export",
         lambda fx, o: ["export", "--adapter", str(fx["adapter"]), "--gguf",
                        str(fx["i21_file"] / "a.gguf"), "--base", str(fx["model"])],
         check_manifest=False, expect="a-file"),
    Case("i21-export-target-proc", "export",
         lambda fx, o: ["export", "--adapter", str(fx["adapter"]), "--gguf", "/proc/a.gguf",
                        "--base", str(fx["model"])], check_manifest=False, expect="/proc"),
    # not one line: the typer/click layer and multi-line refusals
    Case("i21-bad-integer", "generate", lambda fx, o: _gen(fx, "--max-tokens", "abc"),
         expect="--max-tokens"),
    Case("i21-bad-integer-stage", "curate", lambda fx, o: _curate(fx, o, "--limit", "abc"),
         expect="--limit"),
    Case("i21-unknown-flag", "eval", lambda fx, o: _eval(fx, o, "--no-such-flag"),
         expect="--no-such-flag"),
    Case("i21-missing-required", "generate",
         lambda fx, o: ["generate", "--model", str(fx["model"])], expect="--prompt"),
    Case("i21-unknown-command", "ssb", lambda fx, o: ["curat"], expect="curat"),
    Case("i21-changed-config-refusal", "distill",
         lambda fx, o: _distill(fx, o, "--max-steps", "1", "--lr", "0.5"),
         prepare=_i21_started, check_manifest=False, expect="different config"),
    Case("i21-hub-offline-dataset", "problems",
         lambda fx, o: ["problems", "--dataset", "gsm8k", "--source", HUB_MISSING],
         env=OFFLINE, expect=HUB_MISSING),
    # hangs and runaway resources
    Case("i21-config-fifo", "distill",
         lambda fx, o: _distill(fx, o, "--config", str(fx["i21_fifo_toml"])), timeout=HANG_S,
         expect="fifo"),
    Case("i21-generate-config-fifo", "generate",
         lambda fx, o: _gen(fx, "--config", str(fx["i21_fifo_toml"])), timeout=HANG_S,
         expect="fifo"),
    Case("i21-max-tokens-beyond-context", "generate",
         lambda fx, o: _gen(fx)[:-1] + ["100000000"], timeout=2 * HANG_S, expect="context"),
    Case("i21-eval-max-tokens-beyond-context", "eval",
         lambda fx, o: _eval(fx, o, "--max-tokens", "50000000"), timeout=2 * HANG_S,
         expect="context"),
    Case("i21-generator-huge-n-limit-1", "problems",
         lambda fx, o: ["problems", "--dataset", "arithmetic", "--filter", "n=1000000000",
                        "--limit", "1", "--split", "test", "--json"], timeout=HANG_S,
         memory_mb=3000, check_manifest=False, custom=lambda *a: _one_problem(*a)),
    Case("i21-dataset-row-17mb", "problems",
         lambda fx, o: _problems(str(fx["i21_big_jsonl"])), timeout=180, expect=FILE_LINE),
    Case("i21-progress-interval-tiny", "curate",
         lambda fx, o: _curate(fx, o), env={"SSB_PROGRESS_INTERVAL": "1e-9"},
         expect="SSB_PROGRESS_INTERVAL"),
    # silent accepts
    Case("i21-curated-views-disagree", "distill",
         lambda fx, o: _distill(fx, o, curated="i21_cur-views-disagree"), expect=FILE_LINE),
    Case("i21-curated-role-unknown", "distill",
         lambda fx, o: _distill(fx, o, curated="i21_cur-role"), expect=FILE_LINE),
    Case("i21-curated-teacher-ends-assistant", "distill",
         lambda fx, o: _distill(fx, o, curated="i21_cur-teacher-ends-assistant"),
         expect=FILE_LINE),
    Case("i21-curated-special-tokens", "teacher-logits",
         lambda fx, o: ["teacher-logits", "--curated", str(fx["i21_cur-special-tokens"]),
                        "--model", str(fx["model"]), "--out", str(o), "--no-progress"],
         expect=FILE_LINE),
    Case("i21-curated-duplicate-id", "distill",
         lambda fx, o: _distill(fx, o, curated="i21_cur-duplicate-id"), expect=FILE_LINE),
    Case("i21-curated-empty-solution", "distill",
         lambda fx, o: _distill(fx, o, curated="i21_cur-empty-solution"), expect=FILE_LINE),
    Case("i21-temperature-nan", "generate", lambda fx, o: _gen(fx, "--temperature", "nan"),
         expect="--temperature"),
    Case("i21-top-p-zero", "generate", lambda fx, o: _gen(fx, "--top-p", "0"),
         expect="--top-p"),
    Case("i21-top-k-beyond-vocab", "generate", lambda fx, o: _gen(fx, "--top-k", "100000000"),
         expect="top.k"),
    Case("i21-eval-top-k-beyond-vocab", "eval",
         lambda fx, o: _eval(fx, o, "--top-k", "100000000", "--temperature", "0.7"),
         expect="top.k"),
    Case("i21-plugin-lookalike-names", "plugins", lambda fx, o: ["plugins", "--json"],
         env={"PYTHONPATH": "<plugin>"}, check_manifest=False, custom=_plugins_refused),
    Case("i21-compare-duplicate-id-rows", "eval compare",
         lambda fx, o: ["eval", "compare", str(_i21_runs(fx) / "a"), str(_i21_runs(fx) / "dup")],
         prepare=_i21_compare_dup, check_manifest=False, expect=FILE_LINE),
    Case("i21-env-progress-interval-text", "curate", lambda fx, o: _curate(fx, o),
         env={"SSB_PROGRESS_INTERVAL": "soon"}, expect="SSB_PROGRESS_INTERVAL"),
    Case("i21-env-verify-memory-text", "verify",
         lambda fx, o: ["verify", "--domain", "gsm8k", "--response", "1", "--gold", "1"],
         env={"SSB_VERIFY_MEMORY_MB": "lots"}, check_manifest=False,
         expect="SSB_VERIFY_MEMORY_MB"),
    Case("i21-env-load-plugins-empty-names", "curate", lambda fx, o: _curate(fx, o),
         env={"SSB_LOAD_PLUGINS": " , ,"}, expect="SSB_LOAD_PLUGINS"),
]
CASES += ISSUE21_CASES


# -- running and classifying ----------------------------------------------------------------------

@dataclass
class Outcome:
    name: str
    group: str
    clean: bool | None  # None: skipped (no small disk here)
    rc: int | None
    error_lines: list[str]
    reason: str
    seconds: float


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SSB_LOAD_PLUGINS", "gsm8k,math,backends,arithmetic,code")
    env.pop("SSB_PROGRESS_INTERVAL", None)
    env.update(extra)
    return env


def classify(rc: int | None, stderr: str, out: Path | None,
             expect: str = "") -> tuple[bool, list[str], str]:
    """(clean, the non-progress stderr lines, why not clean)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not PROGRESS.match(ln)]
    if "Traceback (most recent call last)" in stderr:
        return False, lines, "traceback"
    if rc != 2:
        return False, lines, f"exit status {rc}"
    if len(lines) != 1:
        return False, lines, f"{len(lines)} lines on stderr"
    if not lines[0].startswith("error: "):
        return False, lines, "the line does not start with 'error: '"
    if out is not None and (out / "manifest.json").exists():
        return False, lines, "left a manifest.json that would refuse the corrected command"
    if expect and not re.search(expect, lines[0], re.IGNORECASE):
        return False, lines, f"the line does not name {expect!r}"
    return True, lines, ""


def _memory_cap(mb: int) -> Callable[[], None] | None:
    if not mb:
        return None

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

    return cap


def _one_problem(rc: int | None, stdout: str, stderr: str) -> tuple[bool, list[str], str]:
    """``--limit 1`` of a huge generated set: one problem, promptly, within the memory cap."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if "Traceback (most recent call last)" in stderr or rc != 0 or len(lines) != 1:
        return False, stderr.splitlines()[-2:], f"exit {rc}, {len(lines)} problems"
    return True, lines[:1], ""


def run_case(case: Case, fx: dict[str, Path], root: Path, timeout: float = 300) -> Outcome:
    out = root / case.name / "out"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    argv = [sys.executable, "-m", "ssb", *case.argv(fx, out)]
    if case.small_disk_kib:
        from ssb.testing import run_on_small_disk

        mount = root / case.name / "disk"
        argv = [sys.executable, "-m", "ssb", *case.argv(fx, mount / "out")]
        try:
            (step,) = run_on_small_disk(mount, [(case.small_disk_kib, argv)],
                                        side=root / case.name / "side", env=_env(case.env),
                                        timeout=timeout)
        except RuntimeError as exc:
            return Outcome(case.name, case.group, None, None, [], f"skipped: {exc}",
                           time.monotonic() - started)
        rc, stderr = step["rc"], step["stderr"]
        clean, lines, reason = classify(rc, stderr, None, case.expect)
        if clean and "no space left on device" not in lines[0]:
            clean, reason = False, "the error is not the full disk"
    else:
        env = _env(case.env)
        if case.env.get("PYTHONPATH") == "<plugin>":  # the probe plugin (a dist-info on the path)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(fx["i21_plugin_path"])] + [p for p in [os.environ.get("PYTHONPATH")] if p])
            env["SSB_LOAD_PLUGINS"] += "," + _PLUGIN_ENV
        timeout = min(timeout, case.timeout)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env,
                                  timeout=timeout, cwd=root,
                                  preexec_fn=_memory_cap(case.memory_mb))
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired:
            return Outcome(case.name, case.group, False, None, [], f"hung (> {timeout:.0f} s)",
                           round(time.monotonic() - started, 1))
        fresh = out if case.check_manifest else None
        if case.custom is not None:
            clean, lines, reason = case.custom(rc, stdout, stderr)
        else:
            clean, lines, reason = classify(rc, stderr, fresh, case.expect)
    return Outcome(case.name, case.group, clean, rc, lines[-5:], reason,
                   round(time.monotonic() - started, 1))


def run_all(cases: list[Case], work: Path, jobs: int = 2) -> list[Outcome]:
    fx = build_fixtures(work / "fixtures")
    root = work / "cases"
    # The compare case's two finished runs first (each is a real eval), so jobs do not race.
    for case in cases:
        if case.prepare is not None:
            case.prepare(fx, root / case.name / "out")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda c: run_case(c, fx, root), cases))


def summary(outcomes: list[Outcome]) -> dict:
    tried = [o for o in outcomes if o.clean is not None]
    return {"clean": sum(bool(o.clean) for o in tried), "tried": len(tried),
            "skipped": len(outcomes) - len(tried)}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="case names (default: all)")
    parser.add_argument("--match", help="only the cases whose name matches this regex")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.group:15s} {c.name}")
        return 0
    cases = [c for c in CASES if (not args.only or c.name in args.only)
             and (not args.match or re.search(args.match, c.name))]
    unknown = set(args.only or []) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    work = args.work or Path(tempfile.mkdtemp(prefix="ssb-probe-"))
    outcomes = run_all(cases, work, jobs=args.jobs)
    for o in outcomes:
        status = "skip" if o.clean is None else "clean" if o.clean else "NOT CLEAN"
        line = o.error_lines[-1] if o.error_lines else ""
        print(f"{status:9s} {o.name:42s} rc={o.rc} {o.seconds:5.1f}s  {o.reason or line}"[:220])
    s = summary(outcomes)
    print(f"\n{s['clean']} clean / {s['tried']} tried"
          + (f" ({s['skipped']} skipped: no small disk here)" if s["skipped"] else ""))
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "outcomes": [asdict(o) for o in outcomes]},
                                        indent=2) + "\n")
    return 0 if s["clean"] == s["tried"] else 1


if __name__ == "__main__":
    sys.exit(main())
