"""The benchmark harness: finds ``bench_<name>.py`` modules, runs them, prints one table
(benchmark, metric, ours, baseline, ratio) and writes the raw numbers with machine info (cores,
load average before and after each benchmark, what else was using the CPU, library versions,
git commit) to a JSON file.

    python -m benchmarks --list
    python -m benchmarks --quick                     # every benchmark, small settings
    python -m benchmarks verify distill --json runs/bench.json

Extra benchmark directories (each holding ``bench_<name>.py`` files) can be named in the
``SSB_BENCH_PATH`` environment variable (``os.pathsep``-separated); the built-in ones win on a
name clash.  Results worth keeping go to ``benchmarks/results/<date>-<what>.json`` (committed);
the default output, ``runs/bench.json``, is git-ignored.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PATH_ENV = "SSB_BENCH_PATH"
DEFAULT_JSON = Path("runs") / "bench.json"
ROW_KEYS = ("metric", "ours", "baseline", "ratio", "unit", "higher_is_better", "note")
VERSIONS = ("torch", "transformers", "peft", "accelerate", "llama_cpp_python", "math-verify",
            "sympy", "numpy")


class BenchmarkError(Exception):
    """A benchmark module that does not follow the interface."""


# -- discovery ---------------------------------------------------------------------------------

def discover() -> dict[str, Path]:
    """``name -> file`` for benchmarks/bench_*.py and the directories in ``SSB_BENCH_PATH``."""
    found: dict[str, Path] = {}
    dirs = [HERE] + [Path(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    for directory in dirs:
        for path in sorted(directory.glob("bench_*.py")):
            found.setdefault(path.stem[len("bench_"):], path)
    return found


def load(path: Path) -> ModuleType:
    """Import a benchmark module: built-in ones as ``benchmarks.bench_x`` (so that helper
    processes can import what they define), others from their file."""
    if path.parent == HERE:
        return importlib.import_module(f"benchmarks.{path.stem}")
    spec = importlib.util.spec_from_file_location(f"ssb_bench_ext_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise BenchmarkError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_module(module: ModuleType) -> None:
    for attr in ("NAME", "DESCRIPTION", "run"):
        if not hasattr(module, attr):
            raise BenchmarkError(f"{module.__name__} lacks {attr} (see benchmarks/__init__.py)")


def normalize_rows(rows: Any, name: str) -> list[dict]:
    """Check a benchmark's rows; fill ``ratio`` from ours/baseline when it left it out."""
    if not isinstance(rows, list) or not rows:
        raise BenchmarkError(f"{name}.run() must return a non-empty list of dicts")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise BenchmarkError(f"{name}.run() returned a {type(row).__name__}, not a dict")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise BenchmarkError(f"{name}: row {row.get('metric')!r} lacks {missing}")
        row = dict(row)
        if row["ratio"] is None and _number(row["ours"]) and _number(row["baseline"]) \
                and row["baseline"] != 0:
            row["ratio"] = row["ours"] / row["baseline"]
        out.append(row)
    return out


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- machine -----------------------------------------------------------------------------------

def machine_info() -> dict:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_isa": _cpu_isa(),
        "memory_gib": _memory_gib(),
        "versions": {},
        "git": _git(),
    }
    try:
        info["cores_available"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cores_available"] = os.cpu_count()
    for dist in VERSIONS:
        try:
            info["versions"][dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info["versions"][dist] = None
    return info


def _cpuinfo(key: str) -> str | None:
    """The value of /proc/cpuinfo's first ``key`` line (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    return _cpuinfo("model name") or platform.processor() or None


# The vector and matrix extensions CPU speed depends on (bf16 training, llama.cpp kernels): the
# same "AMD EPYC" name covers machines with and without AVX512-BF16.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def _cpu_isa() -> list[str]:
    flags = set((_cpuinfo("flags") or "").split())
    return [f for f in ISA_FLAGS if f in flags]


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def _git() -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "modified_files": None if status is None else len(status.splitlines())}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def busy_processes(window: float = 0.5, top: int = 5) -> list[dict]:
    """Other processes using the CPU right now (name and percent of one core, sampled over
    ``window`` seconds): the box may be shared, and a ratio measured next to a busy neighbour
    says so.  Only the short process name is kept, never the command line (it may hold a
    secret)."""
    def sample() -> dict[int, tuple[str, int]]:
        out = {}
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if not entry.isdigit():
                continue
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name = raw[raw.find("(") + 1:raw.rfind(")")]
            fields = raw[raw.rfind(")") + 2:].split()
            out[int(entry)] = (name, int(fields[11]) + int(fields[12]))
        return out

    if not os.path.isdir("/proc"):
        return []
    before = sample()
    time.sleep(window)
    after = sample()
    ticks = os.sysconf("SC_CLK_TCK")
    own = os.getpid()
    usage = []
    for pid, (name, t1) in after.items():
        if pid == own or pid not in before:
            continue
        pct = 100.0 * (t1 - before[pid][1]) / ticks / window
        if pct >= 5:
            usage.append({"pid": pid, "name": name, "cpu_percent": round(pct)})
    return sorted(usage, key=lambda u: -u["cpu_percent"])[:top]


# -- running -----------------------------------------------------------------------------------

def run_one(module: ModuleType, quick: bool) -> dict:
    """Run one benchmark; never raises (a failure is recorded with its traceback tail)."""
    name = getattr(module, "NAME", module.__name__)
    record: dict[str, Any] = {"name": name, "description": getattr(module, "DESCRIPTION", ""),
                              "quick": quick, "load_before": load_average(),
                              "busy_before": busy_processes(), "rows": [], "error": None}
    start = time.perf_counter()
    try:
        check_module(module)
        record["rows"] = normalize_rows(module.run(quick), name)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next benchmark
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-4000:]
    record["seconds"] = round(time.perf_counter() - start, 2)
    record["load_after"] = load_average()
    return record


def run_benchmarks(modules: Sequence[ModuleType], quick: bool, argv: Sequence[str]) -> dict:
    started = datetime.datetime.now(datetime.timezone.utc)
    report = {"created": started.isoformat(timespec="seconds"), "argv": list(argv),
              "quick": quick, "machine": machine_info(), "benchmarks": []}
    for module in modules:
        print(f"[bench] {getattr(module, 'NAME', module.__name__)} ...", file=sys.stderr,
              flush=True)
        report["benchmarks"].append(run_one(module, quick))
    report["seconds"] = round((datetime.datetime.now(datetime.timezone.utc)
                               - started).total_seconds(), 1)
    return report


# -- output ------------------------------------------------------------------------------------

def fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def target_status(row: dict) -> str:
    target = row.get("target")
    if target is None:
        return ""
    better = row.get("higher_is_better", True)
    ok = _number(row["ours"]) and (row["ours"] >= target if better else row["ours"] <= target)
    return f"{'>=' if better else '<='}{fmt(target)} {'ok' if ok else 'MISSED'}"


def print_table(report: dict, file=None) -> None:
    """The table (one row per metric; ratio = ours / baseline), then the notes and the load."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=140)
    machine = report["machine"]
    table = Table(title=f"ssb benchmarks{' (--quick)' if report['quick'] else ''}: "
                        f"{machine.get('cores_available')} cores, git "
                        f"{(machine['git'].get('commit') or '?')[:10]}")
    for col, justify in (("#", "right"), ("benchmark", "left"), ("metric", "left"),
                         ("ours", "right"), ("baseline", "right"), ("ratio", "right"),
                         ("unit", "left"), ("target", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    notes: dict[str, int] = {}  # note -> its number (rows sharing a note share the number)

    def number(note: str) -> str:
        return str(notes.setdefault(note, len(notes) + 1)) if note else ""

    for bench in report["benchmarks"]:
        if bench["error"]:
            table.add_row(number(bench["error"][:500]), bench["name"], "ERROR", "", "", "", "", "")
            continue
        for row in bench["rows"]:
            ratio = row["ratio"]
            better = {True: ", higher is better", False: ", lower is better"}.get(
                row["higher_is_better"], "")
            table.add_row(number(str(row["note"] or "")), bench["name"], str(row["metric"]),
                          fmt(row["ours"]), fmt(row["baseline"]),
                          "-" if ratio is None else f"{fmt(ratio)}x", f"{row['unit']}{better}",
                          target_status(row))
    console.print(table)
    for note, i in notes.items():
        console.print(f"  [{i}] {note}", highlight=False)
    for bench in report["benchmarks"]:
        busy = ", ".join(f"{b['name']} {b['cpu_percent']}%" for b in bench["busy_before"])
        console.print(f"  {bench['name']}: {bench['seconds']:.0f} s, load average "
                      f"{bench['load_before']} -> {bench['load_after']}"
                      f"{'; other processes using the CPU: ' + busy if busy else ''}",
                      highlight=False)


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# -- command lines -----------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small settings (minutes on 2 cores)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the raw numbers (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)

    found = discover()
    unknown = [n for n in args.names if n not in found]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(found)}",
              file=sys.stderr)
        return 2
    if args.list:
        for name, path in found.items():
            try:
                module = load(path)
                check_module(module)
                print(f"{name:12} {module.DESCRIPTION}")
            except Exception as exc:  # noqa: BLE001 - list it anyway, with why it is broken
                print(f"{name:12} (cannot load: {type(exc).__name__}: {exc})")
        return 0
    modules = []
    failed_imports = []
    for name in args.names or list(found):
        try:
            modules.append(load(found[name]))
        except Exception as exc:  # noqa: BLE001
            failed_imports.append({"name": name, "description": "", "quick": args.quick,
                                   "rows": [], "error": f"import failed: {exc}",
                                   "seconds": 0.0, "load_before": None, "load_after": None,
                                   "busy_before": []})
    report = run_benchmarks(modules, args.quick, ["-m", "benchmarks", *argv])
    report["benchmarks"] = failed_imports + report["benchmarks"]
    print_table(report)
    write_json(report, args.json)
    print(f"raw numbers: {args.json}", file=sys.stderr)
    return 1 if any(b["error"] for b in report["benchmarks"]) else 0


def standalone(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/bench_x.py [--quick] [--json PATH]``: one benchmark, same table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers")
    args = parser.parse_args(argv)
    report = run_benchmarks([module], args.quick, [sys.argv[0], *argv])
    print_table(report)
    if args.json is not None:
        write_json(report, args.json)
    return 1 if report["benchmarks"][0]["error"] else 0
