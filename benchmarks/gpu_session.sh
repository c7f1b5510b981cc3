#!/usr/bin/env bash
# Everything issues 4 (CuPy backend) and 6 (the --device cuda target) need from a GPU, most
# important first. Each step has its own time limit, so one that hangs cannot eat the others'
# time; a failed step is reported and the next one runs.
#
#   OUT=results_dir DATA=fashion_mnist_dir bash benchmarks/gpu_session.sh [steps]
#
# steps: any of tests bench train recipe (default: all four, in that order). The device tool
# allows 600 s a call, so there run `tests bench`, then `train`, then `recipe`. Logs and JSON go to
# $OUT (default benchmarks/results/gpu-<date>); DATA holds the four Fashion-MNIST .gz files
# (default /usr/share/datasets/fashion-mnist). A GPU machine without a package registry gets
# them as files: copy them into an ignored folder of the checkout, e.g. data/fashion-mnist
# (/data/ is in .gitignore), and carry that folder along. Runs from the checkout, no install.
#   tests   pytest -m gpu: every CUDA kernel against the reference, gradcheck on cuda, AlexNet
#           and the two towers on the GPU against the CPU, and (where mpirun and mpi4py are
#           installed) two data-parallel ranks sharing the GPU against one process (limit 240 s)
#   bench   bench_alexnet.py --device cuda: batch 128 and 256, TF32 off then on (limit 300 s)
#   train   the paper's AlexNet on Fashion-MNIST at 224, 10 epochs             (limit 560 s)
#   recipe  the same recipe in PyTorch, for the within-1-point check           (limit 560 s)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-benchmarks/results/gpu-$(date +%F)}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
STEPS=${*:-tests bench train recipe}
for s in $STEPS; do
    case $s in
        tests|bench|train|recipe) ;;
        *) echo "gpu_session.sh: unknown step '$s' (expected tests, bench, train, recipe)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
status=0

step() {  # step NAME LIMIT_SECONDS COMMAND...: run it, log to $OUT/NAME.log, report its exit status
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s; last lines of $OUT/$name.log:"
    tail -n 15 "$OUT/$name.log"
    [ "$rc" -eq 0 ] || status=1
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
python -c "import cupy, torch, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)" \
    >> "$OUT/gpu.txt" 2>&1 || true
cat "$OUT/gpu.txt"

for s in $STEPS; do
    case $s in
        tests)  step gpu_tests 240 python -m pytest -m gpu -q -rs -p no:cacheprovider ;;
        bench)  step bench_cuda 300 python benchmarks/bench_alexnet.py --device cuda --out "$OUT/alexnet_cuda.json" ;;
        train)  step train_alexnet_cuda 560 python examples/train_alexnet.py --device cuda --model alexnet \
                    --epochs 10 --data "$DATA" --no-progress --json-log "$OUT/train_alexnet_cuda.jsonl" \
                    --checkpoint "${TMPDIR:-/tmp}/tinynet-gpu-checkpoint" ;;
        recipe) step pytorch_recipe_cuda 560 python benchmarks/pytorch_recipe.py --model alexnet --device cuda \
                    --epochs 10 --data "$DATA" --out "$OUT/pytorch_recipe_alexnet_cuda.json" ;;
    esac
done
exit $status
