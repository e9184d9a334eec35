#!/usr/bin/env bash
# Everything ssb checks on a lent GPU, in one run (at most 9 minutes; 3 on an H200):
#   1. the KD-step benchmark at the paper's scale (benchmarks/gpu_kd_step.py), gradient
#      checkpointing on and then off (ssb distill's default);
#   2. the CUDA tests (tests/test_gpu.py: bf16 distill on the GPU vs fp32 on the CPU, the KD
#      step across devices, generation on the GPU).
# A GPU machine with torch, transformers, peft and accelerate but no network gets ssb, its
# plugins and the pure-Python dependencies it lacks as wheels in .whl/, made beforehand with
#   pip wheel -q --no-deps -w .whl . plugins/backends plugins/gsm8k plugins/math plugins/code
#   pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl platformdirs \
#     math-verify latex2sympy2_extended antlr4-python3-runtime==4.13.2 gguf datasets dill multiprocess
# (with network there, `pip install -e . plugins/*` instead and leave .whl/ out).
# Every part writes under OUT (default ./gpu-out); one part failing does not stop the next.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c 'import sys, torch, transformers, peft, accelerate; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__, "accelerate", accelerate.__version__)'
} 2>&1 | tee "$OUT/env.txt"

echo "== 1a. KD step, gradient checkpointing on"
timeout 210 "$PY" benchmarks/gpu_kd_step.py --gradient-checkpointing --json "$OUT/gpu_kd_step.json" 2>&1 \
  | tee "$OUT/gpu_kd_step.log" || status=1

echo "== 2. CUDA tests"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/ssb-site \
    .whl/*.whl 2>&1 | tail -3
  export PYTHONPATH=/tmp/ssb-site${PYTHONPATH:+:$PYTHONPATH}
fi
timeout 200 "$PY" -m pytest tests/test_gpu.py -q -p no:cacheprovider -m gpu 2>&1 \
  | tee "$OUT/pytest_gpu.log" || status=1

echo "== 1b. KD step, gradient checkpointing off"
timeout 150 "$PY" benchmarks/gpu_kd_step.py --no-gradient-checkpointing \
  --variants sft,teacher_fwd,online,offline --json "$OUT/gpu_kd_step_no_gc.json" 2>&1 \
  | tee "$OUT/gpu_kd_step_no_gc.log" || status=1

exit $status
