#!/usr/bin/env bash
# The GPU checks of splitbrain, in one go (under ten minutes on one modern GPU):
#   1. the whole-step benchmark of both networks (fp32 / bf16, channels_last, torch.compile)
#      and the loader, as a markdown table;
#   2. a few hundred bf16 training steps of each task on the bundled photos, with CUDA's
#      sync-debug mode raising on any host-device synchronisation inside the step;
#   3. two-process torchrun (NCCL) for a few steps, when two GPUs are present;
#   4. training from a folder of JPEG files decoded on the GPU (data.decode=gpu).
# A failed check does not stop the others (GPU time is scarce): each one's exit status goes to
# OUT_DIR/summary.md, and the script exits non-zero if any failed.
# Usage: bash tools/gpu_check.sh [OUT_DIR]   (default: gpu_check/); tables land in OUT_DIR.
#   PYTHON=python3 picks the interpreter; the checkout must be importable (pip install -e . or
#   PYTHONPATH=$PWD).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" \
    || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
"$PY" -c "import torch, torchvision, kornia; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'kornia', kornia.__version__)" \
    | tee -a "$OUT/gpu.csv"
echo "| check | exit status | seconds |" > "$OUT/summary.md"
echo "|---|---|---|" >> "$OUT/summary.md"
FAILED=0

check() {  # check NAME COMMAND...: run, log to OUT/NAME.log, record the status
    local name="$1" start=$SECONDS status
    shift
    echo "== $name"
    "$@" 2>&1 | tee "$OUT/$name.log"
    status=${PIPESTATUS[0]}
    echo "| $name | $status | $((SECONDS - start)) |" >> "$OUT/summary.md"
    [ "$status" -eq 0 ] || FAILED=1
}

gpu_decoded() {  # the run must not have fallen back to the CPU decoder
    grep -q "decoded on cuda" "$OUT/train_gpu_decode/train.log" \
        || { echo "data.decode=gpu fell back to the CPU: see $OUT/train_gpu_decode/train.log"; return 1; }
}

# 1. step benchmark
check step_benchmark "$PY" tools/benchmark.py --step --device cuda --batch 64 --steps 20 \
    --warmup 5 --compile --workers 0,4,8 --out "$OUT/step_benchmark.md"

# 2. bf16 training with sync debugging (errors on any synchronisation in the step)
for task in colorize splitbrain; do
    check "train_$task" "$PY" tools/train.py --task "$task" run.device=cuda run.sync_debug=true \
        run.precision=bf16 run.channels_last=true optim.iterations=300 optim.batch_size=64 \
        data.workers=4 run.log_every=100 run.val_every=300 run.image_every=300 \
        run.ckpt_every=300 "run.out=$OUT/train_$task"
done

# 3. torchrun, two processes
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    check torchrun "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 \
        tools/train.py --task splitbrain run.device=cuda run.precision=bf16 run.sync_bn=true \
        optim.iterations=100 optim.batch_size=64 "run.out=$OUT/torchrun"
else
    echo "| torchrun | skipped: one GPU | 0 |" >> "$OUT/summary.md"
fi

# 4. JPEG files decoded on the GPU (data.decode=gpu)
check jpeg_folder "$PY" -c "import sys; from pathlib import Path; from splitbrain.throughput import jpeg_folder; jpeg_folder(Path(sys.argv[1]), 512)" "$OUT/jpegs"
check train_gpu_decode "$PY" tools/train.py --task colorize run.device=cuda \
    data.train="$OUT/jpegs" data.decode=gpu data.workers=4 run.precision=bf16 \
    run.channels_last=true optim.iterations=100 optim.batch_size=64 run.log_every=50 \
    run.val_every=100 run.image_every=100 run.ckpt_every=100 "run.out=$OUT/train_gpu_decode"
check gpu_decoded gpu_decoded

cat "$OUT/summary.md"
[ "$FAILED" -eq 0 ] && echo "done: $OUT" || echo "some checks failed: $OUT/summary.md"
exit "$FAILED"
