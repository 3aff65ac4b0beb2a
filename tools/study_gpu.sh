#!/usr/bin/env bash
# The CIFAR-10 study with --budget gpu on a GPU machine. Measured on one H200 (2026-12-04):
# about 20 minutes a seed, probe-bound, so the three seeds need about an hour; within one
# 10-minute call only part of seed 0 finishes (docs/study/cifar10_gpu_seed0_partial.md).
# Writes OUT/study_test.md, .png, .json and OUT/study.log, and exits with the study's status
# (124: it ran past LIMIT_S; run the same command again to continue where it stopped).
# Usage: bash tools/study_gpu.sh [DATA] [OUT]
#   DATA: the CIFAR-10 archive or a folder with train/ and test/ (default:
#   data/cifar10-jpg.tar.gz, e.g. a copy of ../shared/data/cifar10-jpg.tar.gz carried along);
#   OUT: default runs/study_gpu. PYTHON picks the interpreter, LIMIT_S the time limit (570).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-data/cifar10-jpg.tar.gz}"
OUT="${2:-runs/study_gpu}"
PY="${PYTHON:-python}"
export PYTHONUNBUFFERED=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" \
    || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$SECONDS
timeout --kill-after=10 "${LIMIT_S:-570}" "$PY" tools/study.py --data "$DATA" --budget gpu \
    --out "$OUT"
status=$?
echo "study --budget gpu: exit status $status after $((SECONDS - start)) s"
exit $status
