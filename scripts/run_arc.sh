#!/usr/bin/env bash
# The ARC measurements of plugins/science/README.md, in their order, from a git worktree pinned to
# one commit (default ../ssb-arc; scripts/pinned_worktree.sh):
#
#   bash scripts/run_arc.sh [COMMIT]
#
# 1. the dev rule: `ssb curate --min-correct 1` on the first 200 ARC-Challenge dev questions, then
#    scripts/arc_dev_rule.py, which applies the rule fixed in the README and writes
#    dev-rule.json beside the run, in $SSB_ARC_DEV_RULE (default ../arc-dev-rule/curate-dev-min1:
#    outside the worktree, so that a rerun at an amended commit reuses it);
# 2. if the rule keeps studies/arc.toml's min-correct, the small SSB run: scripts/run_study.sh
#    with studies/arc.toml (base and ssb on ARC-Challenge test, all 1,172, and ARC-Easy test, the
#    first 500). If it does not, it stops and says so: amend the config, commit it, and rerun
#    at that commit with a new SSB_STUDY_WORKTREE (the dev rule's run is reused, not redone).
# Rerunning the same command resumes (curate and the study are journaled). Run it alone on the
# machine, after the GSM8K study: it needs both cores for about 3.5 hours on vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$(pwd)
commit=$(git rev-parse "${1:-HEAD}")
config=studies/arc.toml
export SSB_STUDY_WORKTREE=${SSB_STUDY_WORKTREE:-$main/../ssb-arc}
rule_run=$(realpath -m "${SSB_ARC_DEV_RULE:-$main/../arc-dev-rule/curate-dev-min1}")
(
  source scripts/pinned_worktree.sh
  pinned_worktree "$commit" "$config" "$SSB_STUDY_WORKTREE"
  echo "run_arc: commit ${commit:0:7}, dev rule in $rule_run, $venv" >&2
  "$venv/bin/ssb" curate --domain science --dataset arc --source ../shared/data/arc \
      --split validation --limit 200 --backend vllm --model default -B kv_cache_space=4 \
      --min-correct 1 --rollouts 4 --temperature 0.8 --top-k 50 --teacher-temperature 0.4 \
      --max-tokens 384 --teacher-max-tokens 512 --batch-size 32 --seed 0 \
      --out "$rule_run"
  "$venv/bin/python" scripts/arc_dev_rule.py "$rule_run"
)
rule=$rule_run/dev-rule.json
choice=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choice"])' "$rule")
configured=$(sed -nE 's/^min-correct *= *([0-9]+).*/\1/p' "$SSB_STUDY_WORKTREE/$config")
if [ "$choice" != "$configured" ]; then
  echo "run_arc: the dev rule chose min-correct $choice, $config has $configured: amend the" \
       "config (and the README), commit, and rerun at that commit with a new" \
       "SSB_STUDY_WORKTREE (the dev rule's run in $rule_run is reused)" >&2
  exit 3
fi
exec bash scripts/run_study.sh "$commit" "$config" runs/study-arc
