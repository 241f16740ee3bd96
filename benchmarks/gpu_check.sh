#!/usr/bin/env bash
# Every GPU check of the project in one command on a GPU machine (about 10 minutes).
#
#   here, once:  bash benchmarks/gpu_check.sh --prepare
#                (fills the git-ignored .gpu/: the tomli-w and faiss-cpu wheels a bare GPU image lacks,
#                 the dataset's files, this machine's reference classifier, so FIDs are measured in
#                 the same feature space as the CPU figures)
#   there:       bash benchmarks/gpu_check.sh          (with .gpu/ beside it)
#   smoke:       bash benchmarks/gpu_check.sh --smoke  (seconds, on the CPU: the same steps at tiny sizes)
#
# It writes to $OUT (default gpu-out): gpu.log (what ran, the machine, each step's time), tests.log
# (the suite with MIXGAN_TEST_DEVICE=cuda) and results/throughput.md and results/quality.md, the
# results-log entries of benchmarks.throughput (the library loop against a hand-written one, batch 32
# and 128) and benchmarks.quality (the script DCGAN, gan and gmgan side by side, 120 s each); append
# those entries to benchmarks/results/.
# Data: --prepare copies fashion-mnist's files from $MIXGAN_DATA_DIR or their usual place
# (benchmarks/_harness.py); on the GPU machine $MIXGAN_DATA_DIR, else .gpu/fashion-mnist.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    set -e
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    mkdir -p .gpu/whl .gpu/fashion-mnist .gpu/cache
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl tomli-w faiss-cpu
    data=$(python3 -c 'from benchmarks._harness import data_dir; print(data_dir("fashion-mnist"))')
    cp "$data"/*.gz .gpu/fashion-mnist/
    cache="${MIXGAN_CACHE:-$HOME/.cache/mixgan}"
    if [ -d "$cache/classifiers" ]; then
        rm -rf .gpu/cache/classifiers && cp -r "$cache/classifiers" .gpu/cache/
    fi
    du -sh .gpu
    exit 0
fi

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT/results"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
export MIXGAN_RESULTS_DIR="$OUT/results" PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

if [ $SMOKE -eq 0 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
        || { say "could not install the carried wheels (run --prepare here first)"; exit 1; }
    export PYTHONPATH="/tmp/site:$PYTHONPATH" MIXGAN_CACHE=/tmp/mixgan-cache
    export MIXGAN_DATA_DIR="${MIXGAN_DATA_DIR:-$PWD/.gpu/fashion-mnist}"
    mkdir -p /tmp/mixgan-cache
    [ -d .gpu/cache/classifiers ] && cp -r .gpu/cache/classifiers /tmp/mixgan-cache/
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$LOG" 2>&1
fi
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" >> "$LOG" 2>&1

status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    say "$name: exit $rc after $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || status=1
}

if [ $SMOKE -eq 1 ]; then
    step throughput 120 $PY -m benchmarks.throughput --smoke >> "$LOG" 2>&1
    step quality 120 $PY -m benchmarks.quality --smoke --models dcgan >> "$LOG" 2>&1
    exit $status
fi

say "suite on cuda"
MIXGAN_TEST_DEVICE=cuda step tests 240 $PY -m pytest -q -n 8 -p no:cacheprovider tests > "$OUT/tests.log" 2>&1
tail -3 "$OUT/tests.log" >> "$LOG"

say "throughput"
step throughput 90 $PY -m benchmarks.throughput --device cuda --batch-sizes 32,128 --steps 300 --warmup 20 \
    --rounds 2 >> "$LOG" 2>&1

say "quality, 120 s each"
step quality 240 $PY -m benchmarks.quality --device cuda --seconds 120 --models dcgan,gan,gmgan \
    --dataset fashion-mnist --eval-jobs 3 --out /tmp/quality >> "$LOG" 2>&1
exit $status
