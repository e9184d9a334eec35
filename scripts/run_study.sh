#!/usr/bin/env bash
# Run (or resume) the SSB study from a git worktree pinned to one commit, so that other work in
# this checkout cannot change the code under a run that lasts hours (docs/study.md).
#
#   bash scripts/run_study.sh [COMMIT] [CONFIG] [OUT] [ssb study flags...]
#
# A config with `backend = "vllm"` runs from the worktree's .venv-vllm (built here if needed).
# Rerunning the same command resumes where the study stopped (every stage is journaled).  Run it
# alone on the machine: llama.cpp slows ~3x when anything else uses the cores.  Afterwards (or
# between sessions) `python scripts/study_snapshot.py OUT docs/study-results/NAME` copies the
# small result files into this checkout for committing.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$(pwd)
commit=$(git rev-parse "${1:-HEAD}")
config=${2:-studies/arithmetic.toml}
out=${3:-runs/study-arithmetic}
source scripts/pinned_worktree.sh
pinned_worktree "$commit" "$config" "$main/../ssb-study"
echo "run_study: commit ${commit:0:7}, config $config, out $(pwd)/$out, $venv (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
exec "$venv/bin/ssb" study --config "$config" --out "$out" "${@:4}"
