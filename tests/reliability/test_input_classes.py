"""Bad input by class (issue 21, section 3): one mechanism per class, each held by a test here.

Real files, FIFOs, /proc files and `ssb` processes; no stand-ins.  The end-to-end view of every
class (one `error:` line, exit 2, no traceback, no hang) is ``test_bad_inputs.py``, which runs
``scripts/probe_bad_inputs.py``; these tests pin each mechanism on its own, fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ssb.errors import DataError, SsbError

DEEP = 50_000


def _record(i: int = 0) -> dict:
    question = f"Tom has {3 + i} apples and buys 2 more. How many apples?"
    student = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
    teacher = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": f"{question}\nA correct response: {5 + i}"}]
    rollout = {"text": f"\\boxed{{{5 + i}}}", "num_tokens": 3, "finish_reason": "stop",
               "extracted": str(5 + i), "correct": True}
    return {"id": f"p{i}", "question": question, "gold": str(5 + i), "dataset": "toy",
            "domain": "gsm8k", "template": "t@1", "student_messages": student,
            "teacher_messages": teacher, "solution": f"So \\boxed{{{5 + i}}}.",
            "correct_rollout": rollout, "wrong_rollout": {**rollout, "correct": False},
            "rollout_answers": [str(5 + i)], "rollout_correct": [True]}


def _jsonl(path: Path, rows: list, tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return path


def _returns_within(fn, seconds: float = 10.0):
    """``fn()``'s result or exception, failing the test if it blocks (a FIFO would)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for over {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _ssb(*args: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "ssb", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# -- tracebacks: nesting, non-regular files, sizes ------------------------------------------------

def test_deep_json_is_refused_with_its_line_in_every_reader(tmp_path):
    """Without the bounded reader: RecursionError from json (a traceback)."""
    from ssb.dataio import read_local_rows
    from ssb.journal import read_json, read_jsonl
    from ssb.stages.distill.alignment import load_curated
    from ssb.stages.evaluate import load_run

    deep_row = '{"question": %s1%s}\n' % ("[" * DEEP, "]" * DEEP)
    data = _jsonl(tmp_path / "rows.jsonl", [{"question": "q", "answer": "#### 1"}], deep_row)
    with pytest.raises(DataError, match=r"rows\.jsonl:2: JSON nested deeper"):
        list(read_jsonl(data))
    with pytest.raises(DataError, match=r"rows\.jsonl:2: "):
        list(read_local_rows(data))
    curated = _jsonl(tmp_path / "cur" / "curated.jsonl", [_record(0)], deep_row)
    with pytest.raises(DataError, match=r"curated\.jsonl:2: JSON nested deeper"):
        load_curated(curated.parent)
    run = tmp_path / "run"
    _jsonl(run / "results.jsonl", [{"id": "a", "samples": [{"correct": True}]}])
    (run / "summary.json").write_text("[" * DEEP + "]" * DEEP)
    with pytest.raises(DataError, match=r"summary\.json: JSON nested deeper"):
        load_run(run)
    # nesting under Python's recursion limit but past the bound is refused too
    (tmp_path / "d.json").write_text("[" * 100 + "]" * 100)
    with pytest.raises(DataError, match="nested deeper than 64"):
        read_json(tmp_path / "d.json")


def test_fifos_and_proc_files_are_refused_without_blocking(tmp_path):
    """Without ``open_input``: opening the FIFO blocks forever (the thread never returns)."""
    from ssb.journal import read_jsonl
    from ssb.options import ConfigError, read_toml
    from ssb.stages.distill.alignment import load_curated

    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(SsbError, match="is a FIFO"):
        _returns_within(lambda: list(read_jsonl(fifo)))
    with pytest.raises(SsbError, match="is a FIFO"):
        _returns_within(lambda: load_curated(fifo))
    toml = tmp_path / "c.toml"
    os.mkfifo(toml)
    with pytest.raises(ConfigError, match="is a FIFO"):
        _returns_within(lambda: read_toml(toml))
    with pytest.raises(SsbError, match="kernel pseudo-file"):
        list(read_jsonl("/proc/self/environ"))


def test_a_row_over_the_line_bound_is_refused_by_line(tmp_path):
    """Without the bound: the line is read whole (and arrow holds it many times over)."""
    from ssb.journal import MAX_LINE_BYTES, read_jsonl

    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        f.write('{"a": 1}\n')
        f.write(json.dumps({"q": "x" * (MAX_LINE_BYTES + 10)}) + "\n")
    with pytest.raises(DataError, match=r"big\.jsonl:2: line is over 16 MiB"):
        list(read_jsonl(path))


def test_out_that_cannot_be_a_directory_is_one_line(tmp_path):
    """Without ``check_output_dir``: FileExistsError / NotADirectoryError from mkdir."""
    from ssb.stage import check_output_dir

    afile = tmp_path / "f"
    afile.write_text("x")
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    for out, why in ((afile, "is a file"), (afile / "sub", "under a file"),
                     (tmp_path / "l1", "symlink loop")):
        with pytest.raises(SsbError, match=why):
            check_output_dir(out)
    check_output_dir(tmp_path / "new" / "deeper")  # a new path under directories is fine


def test_backend_option_values_and_toml_shapes_are_checked_when_parsed(tmp_path):
    """Without ``values``: torch's RuntimeError at load; without ``scalar_table``: the text
    "['cpu']" reaches torch."""
    from ssb.options import ConfigError, resolve
    from ssb.plugins import get_registry
    from ssb.stages.curate import CurateConfig

    factory = get_registry().backend("transformers")
    assert factory.parse_options(["device=cuda:1", "dtype=bf16"]) == {"device": "cuda:1",
                                                                      "dtype": "bf16"}
    for item in ("device=banana", "device=cuda:x", "dtype=half-ish", "batch_size=0"):
        with pytest.raises(SsbError, match=item.split("=")[0]):
            factory.parse_options([item])
    with pytest.raises(SsbError, match="got a list"):
        factory.parse_options({"device": ["cpu"]})
    toml = tmp_path / "c.toml"
    toml.write_text('[curate]\nbackend-opt = {device = ["cpu"]}\n')
    with pytest.raises(ConfigError, match="--backend-opt device takes one value"):
        resolve(CurateConfig, file=toml, flags={"model": "m", "out": str(tmp_path / "o")})


# -- not one line --------------------------------------------------------------------------------

def test_every_error_is_one_line_including_the_typer_layer():
    """Without the click handling in ``ssb.cli.main``: typer's boxed usage screen (5 lines)."""
    from ssb.cli import one_line

    assert one_line("x was started with a different config; refusing to resume.\n"
                    "  lr: 0.1 -> 0.5\nUse a new --out.") == (
        "x was started with a different config; refusing to resume. lr: 0.1 -> 0.5; "
        "Use a new --out.")
    line = _one_error_line(_ssb("generate", "--prompt", "hi", "--max-tokens", "abc"))
    assert "--max-tokens" in line and "ssb generate --help" in line
    assert "--no-such-flag" in _one_error_line(_ssb("plugins", "--no-such-flag"))


# -- hangs and runaway resources -----------------------------------------------------------------

def test_invalid_environment_values_are_one_line_naming_the_variable():
    """Without ``check_environment``: a tiny interval floods the log, text is ignored."""
    from ssb.environment import env_value

    for name, value in (("SSB_PROGRESS_INTERVAL", "1e-9"), ("SSB_PROGRESS_INTERVAL", "soon"),
                        ("SSB_VERIFY_MEMORY_MB", "lots"), ("SSB_LOAD_PLUGINS", "gsm8k;math")):
        assert name in _one_error_line(_ssb("plugins", env={name: value}))
    os.environ["SSB_PROGRESS_INTERVAL"] = "2.5"
    try:
        assert env_value("SSB_PROGRESS_INTERVAL", 10.0) == 2.5
    finally:
        del os.environ["SSB_PROGRESS_INTERVAL"]
    assert env_value("SSB_PROGRESS_INTERVAL", 10.0) == 10.0


def test_a_generated_set_builds_only_what_is_used():
    """Without lazy generation: a billion problems are built before --limit (MemoryError under
    the 2 GiB cap here, a machine's RAM without it)."""
    import resource

    from ssb.plugins import get_registry
    from ssb.stage import select_problems
    from ssb_arithmetic.generator import generate

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-m", "ssb", "problems", "--dataset", "arithmetic",
                           "--filter", "n=1000000000", "--limit", "3", "--split", "test",
                           "--json"], capture_output=True, text=True, timeout=120,
                          preexec_fn=cap)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert [json.loads(ln)["id"] for ln in proc.stdout.splitlines()] == [
        f"arithmetic/test/{i}" for i in range(3)]
    # the same problems, in the same order, as the eager generator made
    loaded = select_problems(get_registry(), "arithmetic", None, "test", 3,
                             filters={"n": "50"})
    assert [p.question for p in loaded.selected] == [g.text for g in generate(3, 2)]


def test_sampling_settings_are_bounded_by_the_model():
    """Without ``SamplingParams.check``: NaN and a huge top-k pass silently, and max_tokens runs
    past the context."""
    from ssb.records import SamplingParams

    for params, flag in ((SamplingParams(temperature=float("nan")), "--temperature"),
                         (SamplingParams(top_p=0.0), "--top-p"),
                         (SamplingParams(top_k=10 ** 8), "--top-k"),
                         (SamplingParams(max_new_tokens=10 ** 8), "--max-tokens")):
        with pytest.raises(SsbError, match=flag):
            params.check(context=2048, vocab=1000)
    SamplingParams(top_k=1000, max_new_tokens=2048).check(context=2048, vocab=1000)


# -- silent accepts ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda r: r["teacher_messages"][1].update(content="What is 7 * 8?"), "pose the record's"),
    (lambda r: r["student_messages"][0].update(role="robot"), "role 'robot'"),
    (lambda r: r["teacher_messages"].append({"role": "assistant", "content": "Sure."}),
     "ends with an assistant turn"),
    (lambda r: r.update(solution="5<|im_end|>\n<|im_start|>user"), "special token"),
    (lambda r: r.update(solution="  "), "empty solution"),
])
def test_curated_records_that_contradict_themselves_are_refused_by_line(tmp_path, change,
                                                                        message):
    """Without ``CuratedRecord.check_views``: distill trains on the record silently."""
    from ssb.stages.distill.alignment import load_curated

    rows = [_record(0), _record(1)]
    change(rows[1])
    path = _jsonl(tmp_path / "curated.jsonl", rows)
    with pytest.raises(DataError, match=rf"curated\.jsonl:2: .*{message}"):
        load_curated(path)


def test_duplicate_ids_name_their_lines(tmp_path):
    """Without the line-aware checks: "duplicate record id" without a file, and ``eval compare``
    weighs a problem twice."""
    from ssb.stages.distill.alignment import load_curated
    from ssb.stages.evaluate import load_run

    path = _jsonl(tmp_path / "curated.jsonl", [_record(0), _record(1), _record(0)])
    with pytest.raises(DataError, match=r"curated\.jsonl:3: duplicate record id 'p0' \(first "
                                        r"on line 1\)"):
        load_curated(path)
    run = tmp_path / "run"
    row = {"id": "a", "question": "q", "gold": "1", "samples": [{"correct": True}]}
    _jsonl(run / "results.jsonl", [row, {**row, "id": "b"}, row])
    (run / "summary.json").write_text("{}")
    with pytest.raises(DataError, match=r"results\.jsonl:3: a second row for id 'a'"):
        load_run(run)


def test_plugin_lookalike_names_and_repeated_prompt_ids_are_refused():
    """Without ``_lookalike``/``_duplicate_prompt``: ' Transformers' and 'GSM8K' register beside
    the built-ins, and a second prose@1 shadows nothing but confuses --template."""
    from ssb.hookspecs import hookimpl
    from ssb.plugins import _EXTRA_PLUGINS, add_plugin, get_registry
    from ssb.prompts import make_template
    from ssb.types import BackendFactory, DatasetLoader

    class Lookalike:
        @hookimpl
        def register_backends(self, register):
            register(BackendFactory(name=" Transformers", create=lambda *a, **k: None))

        @hookimpl
        def register_datasets(self, register):
            register(DatasetLoader(name="GSM8K", domain="gsm8k", load=lambda *a, **k: None))

        @hookimpl
        def register_prompts(self, register):
            register(make_template("prose", "1", "arithmetic"))

    try:
        registry = add_plugin(Lookalike(), "lookalike")
        errors = [e.error for e in registry.errors if e.name == "lookalike"]
        assert any("' Transformers' refused" in e for e in errors), errors
        assert any("'GSM8K' refused" in e and "only in case" in e for e in errors), errors
        assert any("'prose@1'" in e and "already registered" in e for e in errors), errors
        assert " Transformers" not in registry.backends and "GSM8K" not in registry.datasets
    finally:
        _EXTRA_PLUGINS.pop("lookalike", None)
        get_registry(refresh=True)
