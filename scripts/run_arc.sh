#!/usr/bin/env bash
# The ARC measurements of plugins/science/README.md, in their order, from a git worktree pinned to
# one commit (default ../ssb-arc; scripts/pinned_worktree.sh):
#
#   bash scripts/run_arc.sh [COMMIT]
#
# 1. the dev rule: `ssb curate --min-correct 1` on the first 200 ARC-Challenge dev questions, then
#    scripts/arc_dev_rule.py, which applies the rule fixed in the README and writes dev-rule.json
#    beside the run, in $SSB_ARC_DEV_RULE/curate (default ../arc-dev-rule/curate: outside the
#    worktree, so that a rerun at an amended commit reuses it). Committed as it goes, under
#    docs/study-results/arc-dev-rule (its journal every 10 minutes while it runs; dev-rule.json
#    once chosen): a committed dev-rule.json is not chosen again;
# 2. if the rule keeps studies/arc.toml's min-correct, the small SSB run, as the steps of
#    scripts/run_study_steps.sh (committed every 10 minutes and after each step, under
#    docs/study-results/arc): the base on ARC-Challenge test (all 1,172) and ARC-Easy test (the
#    first 500), which need no curation, then the curation from the dev sets, then the `ssb` arm
#    (trained, then evaluated on both). If the rule does not keep it, it stops and says so: amend
#    the config, commit it, and rerun at that commit with a new SSB_STUDY_WORKTREE (the dev rule
#    is reused, not redone).
# A machine here lasts one session: rerunning resumes from what is committed. The `ssb` arm's
# training has to finish within one session (its adapter is not committed). Run it alone on the
# machine, after the GSM8K study: it needs both cores for about 3.5 hours on vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$(pwd)
commit=$(git rev-parse "${1:-HEAD}")
config=studies/arc.toml
export SSB_STUDY_WORKTREE=${SSB_STUDY_WORKTREE:-$main/../ssb-arc}
rule_dir=$(realpath -m "${SSB_ARC_DEV_RULE:-$main/../arc-dev-rule}")
rule_snap=$main/docs/study-results/arc-dev-rule
source scripts/commit_snapshot.sh
if [ ! -f "$rule_snap/dev-rule.json" ]; then
  python3 scripts/study_restore.py "$rule_snap" "$rule_dir"
  (
    source scripts/pinned_worktree.sh
    pinned_worktree "$commit" "$config" "$SSB_STUDY_WORKTREE"
    echo "run_arc: commit ${commit:0:7}, dev rule in $rule_dir/curate, $venv" >&2
    snapshot_ticker commit_snapshot "$rule_dir" "$rule_snap" \
      "the ARC dev rule's curation, in progress"
    "$venv/bin/ssb" curate --domain science --dataset arc --source ../shared/data/arc \
        --split validation --limit 200 --backend vllm --model default -B kv_cache_space=4 \
        --min-correct 1 --rollouts 4 --temperature 0.8 --top-k 50 --teacher-temperature 0.4 \
        --max-tokens 384 --teacher-max-tokens 512 --batch-size 32 --seed 0 \
        --out "$rule_dir/curate"
    "$venv/bin/python" scripts/arc_dev_rule.py "$rule_dir/curate"
  )
  mkdir -p "$rule_snap"
  cp "$rule_dir/curate/dev-rule.json" "$rule_snap/dev-rule.json"
  commit_snapshot "$rule_dir" "$rule_snap" "the ARC dev rule (dev-rule.json)"
fi
choice=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choice"])' \
         "$rule_snap/dev-rule.json")
configured=$(git show "$commit:$config" | sed -nE 's/^min-correct *= *([0-9]+).*/\1/p')
if [ "$choice" != "$configured" ]; then
  echo "run_arc: the dev rule chose min-correct $choice, $config has $configured: amend the" \
       "config (and the README), commit, and rerun at that commit with a new" \
       "SSB_STUDY_WORKTREE (the dev rule in $rule_snap is reused)" >&2
  exit 3
fi
exec bash scripts/run_study_steps.sh "$commit" "$config" runs/study-arc docs/study-results/arc \
  arc-challenge:base arc-easy:base curate arc-challenge:ssb arc-easy:ssb
