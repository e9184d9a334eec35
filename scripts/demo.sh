#!/usr/bin/env bash
# The README's main job: the whole SSB pipeline on the embedded default, offline, on CPU.
# curate (llama.cpp) -> distill (LoRA, torch fp32) -> eval base vs student -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ssb run --preset demo --out "${1:-runs/demo}"
