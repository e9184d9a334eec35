#!/usr/bin/env bash
# Chosen evaluations of a study, on a machine that lasts one session: restore what is committed,
# run the steps in the pinned worktree (scripts/study_steps.py), and commit the snapshot every
# few minutes and after each step, so that the next session's fresh machine loses none of it.
#
#   nohup setsid bash scripts/run_study_steps.sh COMMIT CONFIG OUT SNAPSHOT DATASET:ARM... \
#     >> ../logs/steps.log 2>&1 &
#
# e.g. 15ab09a studies/gsm8k.toml runs/study-gsm8k-vllm docs/study-results/gsm8k-vllm \
#      gsm8k:prompt math500:base math500:prompt math500:ssb
# Commits touch only SNAPSHOT (`git commit -- SNAPSHOT`): other work in this checkout is not
# swept in.  Stop it with `kill -TERM -- -PGID`; rerunning resumes (every stage is journaled).
# The worktree: $SSB_STUDY_WORKTREE, else ../ssb-$(basename OUT) (../ssb-study-gsm8k-vllm above).
# SSB_SNAPSHOT_EVERY: seconds between snapshots while a step runs (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
main=$(pwd)
commit=$(git rev-parse "$1")
config=$2 out=$3 snap=$main/$4
shift 4
source scripts/pinned_worktree.sh
source scripts/commit_snapshot.sh
pinned_worktree "$commit" "$config" "$main/../ssb-$(basename "$out")"  # or $SSB_STUDY_WORKTREE
wt=$(pwd)

snapshot() { commit_snapshot "$wt/$out" "$snap" "$1 (run_study_steps.sh at ${commit:0:7})"; }

python3 "$main/scripts/study_restore.py" "$snap" "$out"
snapshot_ticker snapshot "progress of $*"
# Stopped (`kill -TERM -- -PGID`): what the step journaled so far is committed before exiting.
trap 'snapshot "stopped during $*"; exit 143' TERM INT
for step in "$@"; do
  echo "run_study_steps: $(date -u '+%F %H:%M:%S') $step at ${commit:0:7} (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$venv/bin/python" "$main/scripts/study_steps.py" "$config" "$out" "$step"
  snapshot "$step finished"
done
echo "run_study_steps: $(date -u '+%F %H:%M:%S') done" >&2
