#!/usr/bin/env bash
# The GPU checks of splitbrain, in one go (under ten minutes on one modern GPU):
#   1. the whole-step benchmark of both networks (fp32 / bf16, channels_last, torch.compile)
#      and the loader, as a markdown table;
#   2. a few hundred bf16 training steps of each task on the bundled photos, with CUDA's
#      sync-debug mode raising on any host-device synchronisation inside the step;
#   3. two-process torchrun (NCCL) for a few steps, when two GPUs are present;
#   4. training from a folder of JPEG files decoded on the GPU (data.decode=gpu).
# Usage: bash tools/gpu_check.sh [OUT_DIR]   (default: gpu_check/); tables land in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true

echo "== 1. step benchmark"
"$PY" tools/benchmark.py --step --device cuda --batch 64 --steps 20 --warmup 5 --compile \
    --workers 0,4,8 --out "$OUT/step_benchmark.md"

echo "== 2. bf16 training with sync debugging (errors on any synchronisation in the step)"
for task in colorize splitbrain; do
    "$PY" tools/train.py --task "$task" run.device=cuda run.sync_debug=true \
        run.precision=bf16 run.channels_last=true optim.iterations=300 optim.batch_size=64 \
        data.workers=4 run.log_every=100 run.val_every=300 run.image_every=300 \
        run.ckpt_every=300 "run.out=$OUT/train_$task" 2>&1 | tee "$OUT/train_$task.log"
done

echo "== 3. torchrun, two processes"
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 tools/train.py \
        --task splitbrain run.device=cuda run.precision=bf16 run.sync_bn=true \
        optim.iterations=100 optim.batch_size=64 "run.out=$OUT/torchrun" \
        2>&1 | tee "$OUT/torchrun.log"
else
    echo "one GPU: skipped" | tee "$OUT/torchrun.log"
fi
echo "== 4. JPEG files decoded on the GPU (data.decode=gpu)"
"$PY" -c "import sys; from pathlib import Path; from splitbrain.throughput import jpeg_folder; jpeg_folder(Path(sys.argv[1]), 512)" "$OUT/jpegs"
"$PY" tools/train.py --task colorize run.device=cuda data.train="$OUT/jpegs" data.decode=gpu \
    data.workers=4 run.precision=bf16 run.channels_last=true optim.iterations=100 \
    optim.batch_size=64 run.log_every=50 run.val_every=100 run.image_every=100 \
    run.ckpt_every=100 "run.out=$OUT/train_gpu_decode" 2>&1 | tee "$OUT/train_gpu_decode.log"
grep -q "decoded on cuda" "$OUT/train_gpu_decode/train.log" \
    || { echo "data.decode=gpu fell back to the CPU: see $OUT/train_gpu_decode/train.log"; exit 1; }
echo "done: $OUT"
