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


def classify(rc: int | None, stderr: str, out: Path | None) -> tuple[bool, list[str], str]:
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
    return True, lines, ""


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
        clean, lines, reason = classify(rc, stderr, None)
        if clean and "no space left on device" not in lines[0]:
            clean, reason = False, "the error is not the full disk"
    else:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=_env(case.env),
                                  timeout=timeout, cwd=root)
            rc, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            return Outcome(case.name, case.group, False, None, [], f"hung (> {timeout:.0f} s)",
                           round(time.monotonic() - started, 1))
        fresh = out if case.check_manifest else None
        clean, lines, reason = classify(rc, stderr, fresh)
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
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.group:15s} {c.name}")
        return 0
    cases = [c for c in CASES if not args.only or c.name in args.only]
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
