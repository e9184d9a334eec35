"""The benchmark harness (`python -m benchmarks`) through real subprocesses: listing, a small
benchmark module found through SSB_BENCH_PATH, the table, the JSON with machine info, a broken
module reported without stopping the others, and the standalone entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TINY = textwrap.dedent('''
    """A real (tiny) measurement: sum() vs a Python loop over the same numbers."""
    import sys
    import time
    from pathlib import Path

    NAME = "tiny"
    DESCRIPTION = "sum() vs a Python loop"

    def _rate(fn, n):
        start = time.perf_counter()
        fn()
        return n / (time.perf_counter() - start)

    def run(quick):
        n = 20_000 if quick else 2_000_000
        data = list(range(n))

        def loop():
            total = 0
            for x in data:
                total += x
            return total

        ours, base = _rate(lambda: sum(data), n), _rate(loop, n)
        return [{"metric": "numbers summed/s", "ours": ours, "baseline": base, "ratio": None,
                 "unit": "numbers/s", "higher_is_better": True, "note": f"n={n}",
                 "target": 1.0}]

    if __name__ == "__main__":
        sys.path.insert(0, sys.argv.pop(1))
        from benchmarks.harness import standalone
        sys.exit(standalone(sys.modules[__name__]))
''')

BROKEN = textwrap.dedent('''
    NAME = "broken"
    DESCRIPTION = "returns a row without its keys"

    def run(quick):
        return [{"metric": "oops"}]
''')


def _bench(*args: str, env_dir: Path | None = None, timeout: float = 300):
    env = dict(os.environ)
    if env_dir is not None:
        env["SSB_BENCH_PATH"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_list_names_every_builtin_benchmark():
    proc = _bench("--list")
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"verify", "distill"} <= names
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "cannot load" not in lines["verify"] + lines["distill"]
    assert "answers/s" in lines["verify"]


def test_runs_a_benchmark_and_writes_table_and_json(tmp_path):
    bench_dir = tmp_path / "extra"
    bench_dir.mkdir()
    (bench_dir / "bench_tiny.py").write_text(TINY)
    (bench_dir / "bench_broken.py").write_text(BROKEN)
    out = tmp_path / "out" / "bench.json"

    proc = _bench("--list", env_dir=bench_dir)
    assert "tiny" in proc.stdout and "broken" in proc.stdout

    proc = _bench("tiny", "broken", "--quick", "--json", str(out), env_dir=bench_dir)
    assert proc.returncode == 1, proc.stderr  # one benchmark failed; the other still ran
    table = proc.stdout
    for column in ("benchmark", "metric", "ours", "baseline", "ratio"):
        assert column in table
    assert "numbers summed/s" in table and "ERROR" in table and "lacks" in table
    assert "load average" in table

    report = json.loads(out.read_text())
    assert report["quick"] is True
    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["cores_available"] >= 1
    assert {"torch", "transformers", "llama_cpp_python"} <= set(machine["versions"])
    assert len(machine["git"]["commit"]) == 40
    by_name = {b["name"]: b for b in report["benchmarks"]}
    tiny = by_name["tiny"]
    assert tiny["error"] is None and len(tiny["load_before"]) == 3 and tiny["load_after"]
    row = tiny["rows"][0]
    assert set(row) >= {"metric", "ours", "baseline", "ratio", "unit", "higher_is_better",
                        "note"}
    assert row["ratio"] == row["ours"] / row["baseline"] > 0  # filled in by the harness
    assert "target" in row and (">=1.00 ok" in table)
    assert by_name["broken"]["error"].startswith("BenchmarkError")


def test_unknown_name_is_one_line_exit_2():
    proc = _bench("no-such-bench")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "known:" in proc.stderr


def test_standalone_entry_point(tmp_path):
    script = tmp_path / "bench_tiny.py"
    script.write_text(TINY)
    proc = subprocess.run([sys.executable, str(script), str(REPO), "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "numbers summed/s" in proc.stdout and "tiny" in proc.stdout
