#!/usr/bin/env bash
# Every GPU check of the project in one call of the workplace's device tool (about 10 minutes).
#
#   here, once:  bash benchmarks/gpu_check.sh --prepare
#                (fills the git-ignored .gpu/: the tomli-w and faiss-cpu wheels the GPU image lacks,
#                 the Fashion-MNIST .gz files, this machine's reference classifier, so FIDs are
#                 measured in the same feature space as the CPU figures)
#   there:       run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=600)
#
# On the GPU machine it writes to $OUT: gpu.log (what ran, the machine, each step's time),
# tests.log (the suite with MIXGAN_TEST_DEVICE=cuda), throughput.md/.json (the library loop
# against a hand-written one, batch 32 and 128) and quality.md/.json (issue #13's GPU protocol:
# the script DCGAN, gan and gmgan side by side, 120 s each; the library models with the image preset's
# CUDA batch of 128, config.DEVICE_PRESETS).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    set -e
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    mkdir -p .gpu/whl .gpu/fashion-mnist .gpu/cache
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl tomli-w faiss-cpu
    cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion-mnist/
    cache="${MIXGAN_CACHE:-$HOME/.cache/mixgan}"
    if [ -d "$cache/classifiers" ]; then
        rm -rf .gpu/cache/classifiers && cp -r "$cache/classifiers" .gpu/cache/
    fi
    du -sh .gpu
    exit 0
fi

OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
    || { say "could not install the carried wheels (run --prepare here first)"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MIXGAN_CACHE=/tmp/mixgan-cache
mkdir -p /usr/share/datasets/fashion-mnist /tmp/mixgan-cache
cp .gpu/fashion-mnist/*.gz /usr/share/datasets/fashion-mnist/
[ -d .gpu/cache/classifiers ] && cp -r .gpu/cache/classifiers /tmp/mixgan-cache/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$LOG" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" >> "$LOG" 2>&1

status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    say "$name: exit $rc after $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || status=1
}

say "suite on cuda"
MIXGAN_TEST_DEVICE=cuda step tests 240 python3 -m pytest -q -n 8 -p no:cacheprovider tests > "$OUT/tests.log" 2>&1
tail -3 "$OUT/tests.log" >> "$LOG"

say "throughput"
step throughput 90 python3 benchmarks/throughput.py --device cuda --batch-sizes 32,128 --steps 300 --warmup 20 \
    --rounds 2 --out /tmp/throughput >> "$LOG" 2>&1
cp /tmp/throughput/*.md "$OUT/throughput.md" 2>/dev/null; cp /tmp/throughput/*.json "$OUT/throughput.json" 2>/dev/null

say "quality, 120 s each"
step quality 240 python3 benchmarks/quality.py --device cuda --seconds 120 --models dcgan,gan,gmgan \
    --dataset fashion-mnist --eval-jobs 3 --out /tmp/quality >> "$LOG" 2>&1
cp /tmp/quality/quality.md /tmp/quality/quality.json "$OUT/" 2>/dev/null
exit $status
