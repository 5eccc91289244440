#!/usr/bin/env bash
# One GPU session's checks, in priority order, each under a time limit and all under one deadline:
#   1. kernel_check.py    compiled Pallas kernels vs float64 references (correctness first)
#   2. late_interaction   B=512, Nv=196, Nt=77, D=256 bf16: naive / chunked / Pallas tilings
#   3. attention          XLA vs cuDNN vs Pallas flash attention fwd+bwd at the ViT-B/16 shape (plain, under the mesh)
#   4. train_throughput   ViT-B/16 CLIP (configs/clip.py:base, batch 1024, bf16): step time and MFU with
#                         auto (cuDNN) / XLA / Pallas attention side by side, and a profile of the first
#   5. token_merging      ViT-S/16 224 px forward throughput at r = 13, constant and decreasing schedules (bf16)
#   6. late_interaction   the same shape in float32
#   7. pytest             the kernel unit tests on the GPU (single-device ones)
# Usage, from the repo root of a GPU machine whose python3 has jax[cuda]:
#   bash benchmarks/device_checks.sh OUTDIR [DEADLINE_SECONDS]
#   STEPS="kernel_check li_bf16" bash benchmarks/device_checks.sh OUTDIR 300   # a subset
# Missing pure-python/runtime packages can be supplied as wheels in .whl/ (installed to /tmp/site).
# Logs go to OUTDIR/<step>.log; the tail of each is echoed. Results are recorded in docs/kernels.md
# and docs/performance.md.
set -u
OUTDIR=${1:-/tmp/device_checks}
DEADLINE=$(( $(date +%s) + ${2:-520} ))
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

step() {  # step NAME LIMIT_SECONDS CMD...
  local name=$1 limit=$2 left start rc
  shift 2
  if [[ -n "${STEPS:-}" && " $STEPS " != *" $name "* ]]; then return; fi
  left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then echo "=== $name skipped (deadline)"; return; fi
  echo "=== $name (limit ${limit}s)"
  start=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
  rc=$?
  echo "=== $name rc=$rc in $(( $(date +%s) - start ))s"
  grep -v "^WARNING\|^I0000\|^E0000\|DeprecationWarning" "$OUTDIR/$name.log" | tail -n "${TAIL:-30}"
}

{
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$OUTDIR/env.log" 2>&1
cat "$OUTDIR/env.log"

TAIL=70 step kernel_check 170 python3 benchmarks/kernel_check.py ${KERNEL_CHECK_ARGS:-}
step li_bf16 150 python3 benchmarks/late_interaction.py --shape 512,196,77,256 --dtype bfloat16 --iters 5 \
  --impls naive,chunked,pallas --tilings ${LI_TILINGS:-64x64x4,64x128x8,32x128x4,128x64x8}
step attention 60 python3 benchmarks/attention.py
TAIL=60 step clip_base 330 python3 benchmarks/train_throughput.py --config configs/clip.py:base --steps 10 \
  --sweep model.attention_impl=auto,xla,pallas --profile /tmp/clip_base_trace
step tome 150 python3 benchmarks/token_merging.py --skip_accuracy --res 224 --patch 16 --width 384 --depth 12 \
  --heads 6 --pool cls --batch 256 --iters 10 --dtype bfloat16 --rs ${TOME_RS:-0,13} \
  --schedule ${TOME_SCHEDULES:-constant,decreasing}
step li_f32 120 python3 benchmarks/late_interaction.py --shape 512,196,77,256 --dtype float32 --iters 3 \
  --impls ${LI_F32_IMPLS:-naive,chunked,pallas}
JAX_PLATFORMS=cuda JAX_DEFAULT_MATMUL_PRECISION=highest step pytest 100 python3 -m pytest -q \
  tests/test_late_interaction.py tests/test_token_merging.py tests/test_tome_vit.py \
  -k "not sharded and not explicit_mesh"
echo "=== done"
