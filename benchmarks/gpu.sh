#!/usr/bin/env bash
# The GPU check of the throughput issue, in one call (about 6 minutes on one H200): BERT-base, seq 128,
# bf16-mixed, batches 128/256/512, ours eager and compiled against transformers (eager and sdpa), MFU against
# the H200's measured bf16 matmul rate (~790 TFLOP/s). Imports only torch, transformers and lit_lm.
# Rows print as they finish; the log is also written to $OUT (or ./runs) for the record.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python benchmarks/train_step.py --device cuda --size base --batch 128 256 512 --precision bf16 \
    --compile both --repeats 3 --steps 10 --warmup 3 --peak-tflops 790 2>&1 | tee "$out/gpu_train_step.log"
