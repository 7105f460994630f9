#!/usr/bin/env bash
# The README's GLUE table for the tasks this machine has data for (SST-2): `python -m lit_lm glue` on the budget
# recipe's checkpoint and on random init with its architecture and tokenizer (--random_init), seeds 1, 2, 3, under
# the fair protocol of benchmarks/sst2_pretraining_helps.py: the full training set for 1 epoch, lr 2e-4 (tiny and
# mini encoders want 1e-4..3e-4; BERT-base's 2e-5 leaves them unfitted), max_seq_len 64, bf16-mixed on the CPU
# (AVX512-BF16), encoder and classifier dropout 0.1, gradient clipping 1.0 (configs/sst2.yaml), the last
# checkpoint scored on dev. 4m43s-5m41s per run alone on the 2-core AMD EPYC with AVX512-BF16 (2026-12-01).
#
#   bash benchmarks/glue_sst2_table.sh [CKPT [GLUE_DIR [HARNESS FLAGS...]]]
#   SAVE_DIR=/tmp/smoke LOG=/tmp/smoke.txt bash benchmarks/glue_sst2_table.sh CKPT GLUE_DIR --trainer.max_steps 5
#
# CKPT defaults to runs/cpu_hour/checkpoints/last.ckpt, GLUE_DIR to $LIT_LM_DATA or ../shared/data (the folder
# holding SST-2/, as the tests find it). The raw output goes to $LOG (benchmarks/results/glue_sst2-<date>.txt), the
# tables to $SAVE_DIR/<name>/results.md (runs/glue). A killed script continues where it stopped: finished runs are
# skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
ckpt="${1:-runs/cpu_hour/checkpoints/last.ckpt}"
glue="${2:-${LIT_LM_DATA:-../shared/data}}"
shift $(($# < 2 ? $# : 2))
save="${SAVE_DIR:-runs/glue}"
log="${LOG:-benchmarks/results/glue_sst2-$(date +%F).txt}"
name="$(basename "$(dirname "$(dirname "$ckpt")")")"   # runs/cpu_hour/checkpoints/last.ckpt -> cpu_hour
mkdir -p "$(dirname "$log")"
export PYTHONUNBUFFERED=1

protocol=(--data_dir "$glue" --tasks sst2 --seeds 1,2,3 --save_dir "$save"
          --model.lr 2e-4 --data.max_seq_len 64 --trainer.max_epochs 1
          --trainer.precision bf16-mixed --trainer.accelerator cpu --data.num_workers 0
          "$@")  # off a terminal the runs print a progress line every log_every_n_steps steps
{
    rc=0
    echo "# bash benchmarks/glue_sst2_table.sh $ckpt $glue $*"
    echo "# $(date -u +%FT%TZ), $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(nproc) cores"
    python -m lit_lm glue --pretrained "$ckpt" --name "$name" "${protocol[@]}" || rc=$?
    python -m lit_lm glue --pretrained "$ckpt" --random_init --name "$name-random" "${protocol[@]}" || rc=$?
    for arm in "$name" "$name-random"; do
        echo
        cat "$save/$arm/results.md" 2>/dev/null || echo "$save/$arm/results.md: missing"
    done
    exit $rc
} 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "raw output: $log"
exit "$rc"
