#!/usr/bin/env bash
# What `pip install softboot softboot-<plugin>` users get: build a wheel of every distribution in
# the repository (the core, plugins/*, examples/*), install the wheels into a fresh virtual
# environment (not editable, from outside the source tree), and check that `ssb plugins` lists
# every plugin those wheels declare, from the installed files, with no load error.
# Run by .ci/run after the tests; needs scripts/setup.sh's .venv (it builds the wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PYTHON=${PYTHON:-python3}
PY=.venv/bin/python
work=$(mktemp -d "${TMPDIR:-/tmp}/ssb-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$work/log"
quiet() {
  if ! "$@" >>"$log" 2>&1; then
    echo "check_wheels: '$*' failed; last lines of its output:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

dists=(.)
for p in plugins/*/pyproject.toml examples/*/pyproject.toml; do
  dists+=("$(dirname "$p")")
done
echo "check_wheels: building ${#dists[@]} wheels (${dists[*]})" >&2
# .venv's setuptools builds them (no isolated build environment to download).
quiet "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/wheels" "${dists[@]}"
n_wheels=$(ls "$work"/wheels/*.whl | wc -l)
if [ "$n_wheels" -ne "${#dists[@]}" ]; then
  echo "check_wheels: ${#dists[@]} distributions but $n_wheels wheels" >&2
  exit 1
fi

echo "check_wheels: installing them into a fresh environment" >&2
quiet "$PYTHON" -m venv "$work/venv"
VPY="$work/venv/bin/python"
quiet "$VPY" -m pip install --quiet --upgrade pip
# CPU torch, pinned as in setup.sh: an unpinned `torch` pulls a multi-GB CUDA build.
quiet "$VPY" -m pip install --quiet "torch==2.13.0"
quiet "$VPY" -m pip install --quiet "$work"/wheels/*.whl

echo "check_wheels: ssb plugins" >&2
cd "$work"  # nothing of the source tree on sys.path
env -u SSB_LOAD_PLUGINS -u PYTHONPATH "$work/venv/bin/ssb" plugins --json > plugins.json
env -u PYTHONPATH "$VPY" - "$work/wheels" plugins.json "$repo" <<'EOF'
import json
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

wheels, report_file, repo = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
expected = {}  # entry-point name -> distribution, as the wheels declare them
for whl in sorted(wheels.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        dist = next(line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                    if line.startswith("Name:"))
        eps = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        section = None
        for line in (z.read(eps[0]).decode().splitlines() if eps else []):
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "ssb" and "=" in line:
                expected[line.split("=", 1)[0].strip()] = dist
report = json.loads(report_file.read_text())
listed = {p["name"]: p["distribution"] for p in report["plugins"]}
problems = [f"{name} ({dist}) not listed" for name, dist in expected.items()
            if listed.get(name) != dist]
problems += [f"{e['name']} failed to load: {e['error']}" for e in report.get("errors", [])]
import ssb  # noqa: E402  (the installed one)

where = Path(ssb.__file__).resolve()
if repo in where.parents:
    problems.append(f"ssb imported from the source tree ({where}), not the wheel")
direct = distribution("softboot").read_text("direct_url.json") or "{}"
if json.loads(direct).get("dir_info", {}).get("editable"):
    problems.append("softboot is installed editable")
if problems:
    sys.exit("check_wheels: " + "; ".join(problems))
print(f"check_wheels: {len(expected)} plugins listed from {len(list(wheels.glob('*.whl')))} "
      f"wheels: {', '.join(f'{n} ({d})' for n, d in sorted(expected.items()))}")
EOF
