#!/usr/bin/env bash
# Everything the GPU path needs from a GPU, in one call of at most 9 minutes, most important first
# (issue 12, part B). Each step stops at a deadline computed from the time left, so one that hangs
# cannot eat the others' time; a failed step is reported and the next one runs.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from the checkout (no install)
#   bash benchmarks/gpu_check.sh --dry-run    # on any CPU: the same steps at tiny sizes, the
#                                             # tinynet side through tests/cupy_standin.py
#
#   1 env+smoke  nvidia-smi and versions; every kernel instance compiled; five training steps of
#                the paper's AlexNet, their losses (benchmarks/gpu_smoke.py)
#   2 tests      pytest -m gpu: the kernel contract and end-to-end tests on the GPU; the CPU side
#                on the reference backend, so a cold Numba cache costs nothing
#   3 bench      bench_alexnet.py --device cuda: batch 128 and 256, TF32 off then on, per-layer
#                table, no memory child processes; conv2-conv5 by Winograd against all im2col
#                (--baseline) in the same rounds, which decides what "auto" should pick on CUDA
#   4 train      the paper's AlexNet on Fashion-MNIST at 224, up to 10 epochs, JSON per epoch
#   5 recipe     the same recipe in PyTorch, epoch by epoch, for the time left
#
#   bash benchmarks/gpu_check.sh d2l          # a second call (issue 15's target): d2l's AlexNet
#                                             # with d2l's recipe, Fashion-MNIST at 224, 10 epochs
#
# Environment: OUT (default $OUT or benchmarks/results/gpu-<date>) receives at most 8 files: the
# seven below and rest.tar.gz with anything else; DATA (default data/fashion-mnist, the four
# Fashion-MNIST .gz files, git-ignored, carried along with the checkout); BUDGET (seconds, default
# 540: the 9 minutes of a 10-minute call, with the machine's start on top); PYTHON (default python3,
# the GPU machine's interpreter).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
DRY=0
ONLY=
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        d2l) ONLY=d2l ;;
        *) echo "gpu_check.sh: unknown argument '$arg' (expected --dry-run and/or d2l)" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-benchmarks/results/gpu-$(date +%F)}
DATA=${DATA:-data/fashion-mnist}
BUDGET=${BUDGET:-540}
PY=${PYTHON:-python3}
mkdir -p "$OUT/rest"
START=$SECONDS
status=0

# Per step: at most CAP seconds, and never into RESERVE, the seconds kept for the steps after it.
#            cap  reserve
SMOKE=(      120  360 )     # a cold NVRTC compile of 54 instances, then 5 steps
TESTS=(      150  270 )
BENCH=(      150  200 )     # 2 batches x (fp32, tf32), 30 timed steps each, one per-layer table
TRAIN=(      600  100 )     # 10 epochs of 60,000 images; the recipe keeps the last 100 s
RECIPE=(     600   10 )     # whatever is left, less 10 s to pack the results
if [ "$DRY" = 1 ]; then
    PY_GPU=("$PY" tests/cupy_standin.py)    # tinynet's cuda device through the stand-in
    TORCH_DEVICE=cpu
    SMOKE_ARGS=(--batch-size 2 --steps 2)
    BENCH_ARGS=(--device cpu --batch-sizes 1 --warmup 0 --repeats 1 --no-layers)
    TRAIN_ARGS=(--epochs 1 --limit-train 8 --limit-test 8 --batch-size 4)
    RECIPE_ARGS=(--epochs 1 --limit-train 16 --limit-test 16 --batch-size 8)
else
    PY_GPU=("$PY")
    TORCH_DEVICE=cuda
    SMOKE_ARGS=()
    BENCH_ARGS=(--device cuda)
    TRAIN_ARGS=(--epochs 10)
    RECIPE_ARGS=(--epochs 10)
fi

left() { echo $((BUDGET - (SECONDS - START))); }

step() {  # step LOG CAP RESERVE COMMAND...: run it until its deadline, log to $OUT/LOG
    local log=$1 cap=$2 reserve=$3
    shift 3
    local limit=$(( $(left) - reserve ))
    [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$limit" -lt 10 ]; then
        echo "== $log: skipped, $(left) s left" | tee -a "$OUT/$log"
        status=1
        return
    fi
    echo "== $log (deadline ${limit} s, $(left) s left): $*" | tee -a "$OUT/$log"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >> "$OUT/$log" 2>&1
    local rc=$?
    [ "$rc" -eq 124 ] && echo "== stopped at its deadline" >> "$OUT/$log"
    echo "== $log: exit $rc after $((SECONDS - t0)) s; its last lines:"
    tail -n 12 "$OUT/$log"
    [ "$rc" -eq 0 ] || status=1
}

# d2l's net with d2l's recipe instead of steps 1-5 (a second call: the first one's budget is full)
if [ "$ONLY" = d2l ]; then
    D2L_ARGS=(--epochs 10)
    [ "$DRY" = 1 ] && D2L_ARGS=(--epochs 1 --limit-train 8 --limit-test 8 --batch-size 4 --image-size 67)
    step 6_d2l.log "$BUDGET" 10 "${PY_GPU[@]}" examples/train_alexnet.py --device cuda --model d2l \
        --data "$DATA" --no-progress --json-log "$OUT/6_d2l.jsonl" \
        --checkpoint "${TMPDIR:-/tmp}/tinynet-gpu-check-d2l" "${D2L_ARGS[@]}"
    rmdir "$OUT/rest" 2>/dev/null
    echo "== done in $((SECONDS - START)) s (budget $BUDGET s), status $status"
    exit $status
fi

# 1. environment and smoke
{
    echo "== environment ($(date -u +%FT%TZ), dry run: $DRY)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "no nvidia-smi"
    command -v nvcc >/dev/null && nvcc --version | tail -n 1
    git log -1 --format='checkout %h %s' 2>/dev/null
} > "$OUT/1_env_smoke.log" 2>&1
cat "$OUT/1_env_smoke.log"
step 1_env_smoke.log "${SMOKE[@]}" "${PY_GPU[@]}" benchmarks/gpu_smoke.py "${SMOKE_ARGS[@]}"

# 2. the gpu-marked tests (in a dry run they all skip: the command itself is what is checked)
step 2_gpu_tests.log "${TESTS[@]}" env TINYNET_CPU_BACKEND=reference \
    "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider

# 3. the benchmark against PyTorch; tinynet's conv2-conv5 by Winograd (TINYNET_CONV_ALGORITHM=winograd:
# "auto" keeps im2col on CUDA until this is measured) and, in the same rounds, a net all on im2col
step 3_bench.log "${BENCH[@]}" env TINYNET_CONV_ALGORITHM=winograd "$PY" benchmarks/bench_alexnet.py \
    "${BENCH_ARGS[@]}" --baseline im2col --no-memory --out "$OUT/3_bench.json"

# 4 and 5. training, tinynet then PyTorch, on the data that travelled with the checkout
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "== no Fashion-MNIST in $DATA (the four .gz files): training steps skipped" | tee -a "$OUT/4_train.log"
    status=1
else
    step 4_train.log "${TRAIN[@]}" "${PY_GPU[@]}" examples/train_alexnet.py --device cuda --model alexnet \
        --data "$DATA" --no-progress --json-log "$OUT/4_train.jsonl" \
        --checkpoint "${TMPDIR:-/tmp}/tinynet-gpu-check-checkpoint" "${TRAIN_ARGS[@]}"
    step 5_recipe.log "${RECIPE[@]}" "$PY" benchmarks/pytorch_recipe.py --model alexnet \
        --device "$TORCH_DEVICE" --data "$DATA" --out "$OUT/rest/pytorch_recipe.json" "${RECIPE_ARGS[@]}"
fi

# At most 8 files come back: the seven named above, and everything else in rest.tar.gz.
keep=(1_env_smoke.log 2_gpu_tests.log 3_bench.log 3_bench.json 4_train.log 4_train.jsonl 5_recipe.log)
for f in "$OUT"/* "$OUT"/.[!.]*; do
    [ -e "$f" ] || continue
    name=$(basename "$f")
    [[ " ${keep[*]} rest rest.tar.gz " == *" $name "* ]] || mv "$f" "$OUT/rest/"
done
tar -czf "$OUT/rest.tar.gz" -C "$OUT" rest && rm -rf "$OUT/rest"
echo "== done in $((SECONDS - START)) s (budget $BUDGET s), status $status; $OUT:"
ls -l "$OUT"
exit $status
