#!/usr/bin/env bash
# GPU checks, for a machine with CUDA (CI has none): the parity tests with the models on the GPU (exact mode is
# IEEE float32 there, so the CPU tolerances hold), then the benchmark in float32 (exact and fast), float16 and
# bfloat16 at batch 1 and 4.
#
#   tools/device_check.sh [MODELS_DIR]     # MODELS_DIR: converted hyperstyle_ffhq + faces_w_encoder (default:
#                                          # the FFHQ 1024 recipe weights, rebuilt for every precision)
# Logs go to $LOG_DIR (default /tmp/hyperstyle_device_check); ../shared (or $HYPERSTYLE_SHARED) must be there.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=${LOG_DIR:-/tmp/hyperstyle_device_check}
mkdir -p "$LOG"
status=0
HYPERSTYLE_TEST_DEVICE=cuda $PY -m pytest -q -rs tests/core/test_parity.py tests/core/editing/test_interfacegan_edits.py \
  tests/core/test_restyle_domain.py tests/core/editing/test_styleclip.py tests/core/test_devices.py \
  tests/core/train/test_train_parity.py 2>&1 \
  | tee "$LOG/parity_cuda.log" || status=1
if [ $# -ge 1 ]; then
  recipe_args=(--models "$1")
else
  recipe_args=()
fi
for dtype in float32 float16 bfloat16; do
  modes=(exact)
  [ "$dtype" = float32 ] && modes=(exact fast)   # fast mode casts float32 models itself
  $PY -m hyperstyle_core bench --device cuda --dtype "$dtype" --batch 1 4 --mode "${modes[@]}" --repeats 3 \
    "${recipe_args[@]}" 2>&1 | tee "$LOG/bench_$dtype.log" || status=1
done
exit $status
