# Sourced by the long-run scripts (run_study_steps.sh, run_arc.sh, run_queue.sh): commit a run's
# snapshot, now or every few minutes.
#
#   commit_snapshot RUN SNAPSHOT MESSAGE
#   snapshot_ticker COMMAND...   # runs COMMAND every $SSB_SNAPSHOT_EVERY s (600) in the
#                                # background until the calling shell exits
#
# scripts/study_snapshot.py copies RUN's small result files (and its unfinished journals, under
# partial/) into SNAPSHOT, a folder of this checkout ($main), which is then committed on its own
# (`git commit -- SNAPSHOT`: other work in the checkout is not swept in).  A failure (a git lock
# held by a commit made by hand at that moment) is reported and left for the next call.  A
# machine here lasts one session: what is not committed is lost with it.
commit_snapshot() {
  local run=$1 snap=$2 message=$3
  python3 "$main/scripts/study_snapshot.py" "$run" "$snap" >/dev/null || return 0
  (
    cd "$main"
    git add -A -- "$snap"
    if ! git diff --cached --quiet -- "$snap"; then
      git commit -q -m "Study snapshot ($(basename "$snap"), automatic): $message" -- "$snap" \
        && echo "commit_snapshot: committed $snap ($message)" >&2
    fi
  ) || echo "commit_snapshot: committing $snap failed ($message); the next call retries" >&2
}

snapshot_ticker() {
  ( while sleep "${SSB_SNAPSHOT_EVERY:-600}"; do "$@"; done ) &
  local ticker=$!
  trap "kill $ticker 2>/dev/null || true" EXIT
}
