#!/usr/bin/env bash
# The GPU checks of splitbrain, in one go, within a time budget (default 480 s on one GPU):
#   1. a few hundred bf16 training steps of each task on the bundled photos, with CUDA's
#      sync-debug mode raising on any host-device synchronisation inside the step;
#   2. training from a folder of JPEG files decoded on the GPU (data.decode=gpu);
#   3. the whole-step benchmark of both networks (fp32 / bf16, channels_last) and the loader;
#      100 bf16 training steps of the compiled network (run.compile=true) under sync
#      debugging; then bf16 + channels_last steps under torch.compile; as markdown tables;
#   4. two-process torchrun (NCCL, SyncBatchNorm, sync debug) when two GPUs are present.
# A failed check does not stop the others (GPU time is scarce), and each check gets at most
# its own limit and what is left of the budget, so one slow check cannot starve the rest: each
# one's exit status goes to OUT_DIR/summary.md (124: ran out of time), and the script exits
# non-zero if any failed. OUT_DIR/report.md gathers everything worth reading in one file.
# Usage: bash tools/gpu_check.sh [OUT_DIR]   (default: gpu_check/)
#   PYTHON=python3 picks the interpreter; BUDGET_S=480 the time budget in seconds; the
#   checkout must be importable (pip install -e . or PYTHONPATH=$PWD).
# On a lent machine with torch but no kornia (wheels in .whl/, carried along), for example:
#   pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:$PWD PYTHON=python3 bash tools/gpu_check.sh /tmp/gc; cp /tmp/gc/report.md "$OUT"/
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
PY="${PYTHON:-python}"
BUDGET="${BUDGET_S:-480}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" \
    || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
"$PY" -c "import torch, torchvision, kornia; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'kornia', kornia.__version__)" \
    | tee -a "$OUT/gpu.csv"
echo "| check | exit status | seconds |" > "$OUT/summary.md"
echo "|---|---|---|" >> "$OUT/summary.md"
FAILED=0

check() {  # check NAME LIMIT_S COMMAND...: run, log to OUT/NAME.log, record the status
    local name="$1" limit="$2" start=$SECONDS status left
    shift 2
    left=$((BUDGET - SECONDS))
    if [ "$left" -lt "${MIN_CHECK_S:-20}" ]; then  # too little left to be worth starting
        echo "| $name | skipped: out of time | 0 |" >> "$OUT/summary.md"
        FAILED=1
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "== $name (at most ${limit} s)"
    if declare -F "$1" > /dev/null; then  # a shell function: nothing to time out
        "$@" 2>&1 | tee "$OUT/$name.log"
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    fi
    status=${PIPESTATUS[0]}
    echo "| $name | $status | $((SECONDS - start)) |" >> "$OUT/summary.md"
    [ "$status" -eq 0 ] || FAILED=1
}

gpu_decoded() {  # the run must not have fallen back to the CPU decoder
    grep -q "decoded on cuda" "$OUT/train_gpu_decode/train.log" \
        || { echo "data.decode=gpu fell back to the CPU: see $OUT/train_gpu_decode/train.log"; return 1; }
}

# 1. bf16 training with sync debugging (errors on any synchronisation in the step)
for task in colorize splitbrain hints; do
    check "train_$task" 90 "$PY" tools/train.py --task "$task" run.device=cuda \
        run.sync_debug=true run.precision=bf16 run.channels_last=true optim.iterations=200 \
        optim.batch_size=64 data.workers=4 run.log_every=100 run.val_every=200 \
        run.image_every=200 run.ckpt_every=200 "run.out=$OUT/train_$task"
done

# 2. JPEG files decoded on the GPU (data.decode=gpu)
check jpeg_folder 60 "$PY" -c "import sys; from pathlib import Path; from splitbrain.throughput import jpeg_folder; jpeg_folder(Path(sys.argv[1]), 512)" "$OUT/jpegs"
check train_gpu_decode 60 "$PY" tools/train.py --task colorize run.device=cuda \
    data.train="$OUT/jpegs" data.decode=gpu data.workers=4 run.precision=bf16 \
    run.channels_last=true optim.iterations=100 optim.batch_size=64 run.log_every=50 \
    run.val_every=100 run.image_every=100 run.ckpt_every=100 "run.out=$OUT/train_gpu_decode"
check gpu_decoded 10 gpu_decoded

# 3. step benchmark: the eager grid and the loader; the compiled network trained; its step
check step_benchmark 150 "$PY" tools/benchmark.py --step --device cuda --batch 64 --steps 10 \
    --warmup 3 --workers 0,4,8 --out "$OUT/step_benchmark.md"
# (run.compile=true, under sync debugging too; 100 steps: it compiles first)
check train_compiled 90 "$PY" tools/train.py --task colorize run.device=cuda run.compile=true \
    run.sync_debug=true run.precision=bf16 run.channels_last=true optim.iterations=100 \
    optim.batch_size=64 data.workers=4 run.log_every=50 run.val_every=100 \
    run.image_every=100 run.ckpt_every=100 "run.out=$OUT/train_compiled"

check step_benchmark_compiled 120 "$PY" tools/benchmark.py --step --device cuda --batch 64 \
    --steps 10 --warmup 3 --precisions bf16 --channels-last yes --compile --workers 8 \
    --out "$OUT/step_benchmark_compiled.md"

# 4. torchrun, two processes
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    check torchrun 90 "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 \
        tools/train.py --task splitbrain run.device=cuda run.precision=bf16 run.sync_bn=true \
        run.sync_debug=true optim.iterations=100 optim.batch_size=64 "run.out=$OUT/torchrun"
else
    echo "| torchrun | skipped: one GPU | 0 |" >> "$OUT/summary.md"
fi

{   # one file with everything worth reading
    echo "# splitbrain GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo; cat "$OUT/gpu.csv"; echo; cat "$OUT/summary.md"
    for table in step_benchmark step_benchmark_compiled; do
        [ -f "$OUT/$table.md" ] && { echo; echo "## $table"; echo; cat "$OUT/$table.md"; }
    done
    for log in "$OUT"/*.log; do
        echo; echo "## $(basename "$log") (last lines)"; echo; echo '```'
        tail -n 15 "$log" | cut -c1-400; echo '```'
    done
} > "$OUT/report.md"
cat "$OUT/summary.md"
[ "$FAILED" -eq 0 ] && echo "done: $OUT/report.md" || echo "some checks failed: $OUT/report.md"
exit "$FAILED"
