#!/usr/bin/env bash
# The whole GPU check of issue 21 in ONE device call (at most 8 minutes on one H200):
#   setup       the environment line (GPU, driver, python, torch, lightning, transformers ...) after installing the
#               carried wheels (jsonargparse and its [signatures] needs: the image lacks them)
#   tier        the gpu test tier, tests/gpu (fit under every precision with clipping, compile, exact resume, predict,
#               export, lit_lm.load, lit-lm glue, the sync-free step)
#   budget      the budget recipe for 2.5 minutes on WikiText-2 (cli.yaml + configs/cpu_hour.yaml, batch 128, lr 1.5e-3)
#   glue        the GLUE arms from that checkpoint (benchmarks/glue_pretraining_helps.py, seed 1, CoLA SST-2 MRPC
#               STS-B RTE WNLI, each run capped by --trainer.max_time; random and pretrained side by side)
#   loop        the fit loop against the bare step (benchmarks/loop_overhead.py): mini B128, base B64
#   train_step  the train-step table (benchmarks/train_step.py): ours eager/compiled vs transformers eager/sdpa, base B256
# in that order, what matters most first (the train-step table was measured on 2026-12-04, ../shared/notes: it gets
# whatever time is left). Each section runs under its own `timeout`, never past the call's budget
# (GPU_SH_BUDGET_S, 480 s); a failed or timed-out section is reported and the next one runs.
#
# Prepare here, once a session (both folders are ignored by git and travel only as `carry`, 24 MB together):
#   bash benchmarks/gpu_wheels.sh && bash benchmarks/gpu_data.sh
# Then the device call:
#   run(command="bash benchmarks/gpu.sh", carry=[".whl", ".gpu_data"], timeout_s=560)
# Files back from $OUT (8, the limit): gpu.log (everything), setup.log, tier.log, budget.log, glue.txt,
# loop_mini.txt, loop_base.txt, train_step.txt (the benchmarks' own raw outputs, headed by command, date and machine:
# copy them to benchmarks/results/ to cite them).
# Some sections only: GPU_SH_SECTIONS="setup tier" bash benchmarks/gpu.sh (glue needs budget's checkpoint, same call).
# The plumbing on the CPU, every section with tiny sizes: GPU_SH_CPU=1 bash benchmarks/gpu.sh (OUT: runs/gpu_sh).
set -uo pipefail  # not -e: a failed section is reported and the script goes on
cd "$(dirname "$0")/.."

export CPU="${GPU_SH_CPU:-0}"
if [ "$CPU" = 1 ]; then
  export PY="${PYTHON:-.venv/bin/python}" OUT="${OUT:-runs/gpu_sh}" RUNS="${GPU_SH_RUNS:-runs/gpu_sh_runs}"
  BUDGET_S="${GPU_SH_BUDGET_S:-1500}"
else
  export PY="${PYTHON:-python3}" RUNS="${GPU_SH_RUNS:-/tmp/gpu_sh_runs}"
  export OUT="${OUT:-runs/gpu_sh}"
  BUDGET_S="${GPU_SH_BUDGET_S:-480}"
fi
SECTIONS="${GPU_SH_SECTIONS:-setup tier budget glue loop train_step}"
MIN_S=30  # a section with less time left than this is skipped, not started
DEADLINE=$((SECONDS + BUDGET_S))
export PYTHONUNBUFFERED=1 LIT_LM_DATA="$PWD/.gpu_data" CKPT="$RUNS/cpu_hour/checkpoints/last.ckpt"
mkdir -p "$OUT" "$RUNS"
exec > >(tee "$OUT/gpu.log") 2>&1
TEE=$!

say() { echo "[gpu.sh $(date -u +%H:%M:%S) +${SECONDS}s] $*"; }
report=()

# section NAME CAP LOG: run the function NAME under `timeout` for at most CAP seconds and what the call has left,
# its output to gpu.log and, unless LOG is -, to $OUT/LOG too
section() {
  local name=$1 cap=$2 log=$3 left=$((DEADLINE - SECONDS)) rc t0=$SECONDS
  case " $SECTIONS " in *" $name "*) ;; *) return ;; esac
  local t=$((cap < left ? cap : left))
  if ((t < MIN_S)); then
    say "== $name: SKIPPED (${left}s left of the call's ${BUDGET_S}s)"
    report+=("$name: skipped, no time left")
    return
  fi
  say "== $name (at most ${t}s)"
  if [ "$log" = - ]; then
    SECTION_S=$t timeout -k 10 "$t" bash -c "$name"
    rc=$?
  else
    SECTION_S=$t timeout -k 10 "$t" bash -c "$name" 2>&1 | tee "$OUT/$log"
    rc=${PIPESTATUS[0]}
  fi
  local what=ok
  ((rc == 124 || rc == 137)) && what="TIMED OUT after ${t}s" || { ((rc != 0)) && what="FAILED (exit $rc)"; }
  say "== $name: $what in $((SECONDS - t0))s"
  report+=("$name: $what in $((SECONDS - t0))s")
}

# ---- setup: the carried wheels (outside `timeout`: its PYTHONPATH must reach the later sections), the environment
setup_wheels() {
  local site
  site="$(cd "$RUNS" && pwd)/site"
  if ls .whl/*.whl >/dev/null 2>&1; then
    timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      .whl/*.whl && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" || say "wheel install FAILED"
  else
    say "no .whl/ (bash benchmarks/gpu_wheels.sh here, then carry .whl): using what the image has"
  fi
}
setup() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: none (no NVIDIA GPU here)"
  "$PY" - <<'EOF'
import importlib.metadata as m, os, platform, sys
import torch
names = ["torch", "lightning", "torchmetrics", "transformers", "tokenizers", "jsonargparse", "docstring-parser",
         "typeshed-client", "tensorboard", "safetensors", "triton"]
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "missing"
gpu = (f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB), CUDA "
       f"{torch.version.cuda}" if torch.cuda.is_available() else "no CUDA")
print(f"env: {gpu}; python {platform.python_version()} ({sys.executable}); "
      + ", ".join(f"{n} {version(n)}" for n in names) + f"; {os.cpu_count()} CPUs")
import jsonargparse, lit_lm.cli  # noqa: E401,F401  (the CLI's imports resolve: the wheels took)
print(f"lit_lm.cli imports: ok (jsonargparse from {os.path.dirname(jsonargparse.__file__)})")
EOF
  [ -d "$LIT_LM_DATA/wikitext-2" ] && [ -d "$LIT_LM_DATA/glue" ] && du -sh "$LIT_LM_DATA"/* \
    || echo "no $LIT_LM_DATA (bash benchmarks/gpu_data.sh here, then carry .gpu_data): budget and glue will fail"
}

# ---- tier: the gpu test tier (addopts cleared: the image has no nbmake) ------------------------------------------
tier() {
  if [ "$CPU" = 1 ]; then  # the rehearsal, two tests' worth: the full one is LIT_LM_GPU_TIER_ON_CPU=1 pytest tests/gpu
    LIT_LM_GPU_TIER_ON_CPU=1 "$PY" -m pytest tests/gpu -o addopts="" -p no:cacheprovider -v -rA --durations=10 \
      -k "${GPU_SH_TIER_K:-pretraining_quickstart_fits_with_clipping_on and 32-true-norm or predict}"
  else
    "$PY" -m pytest tests/gpu -o addopts="" -p no:cacheprovider -v -rA --durations=15 ${GPU_SH_TIER_K:+-k "$GPU_SH_TIER_K"}
  fi
}

# ---- budget: the recipe for 2.5 minutes on WikiText-2 -------------------------------------------------------------
budget() {
  local args=(fit --config cli.yaml --config configs/cpu_hour.yaml --data.data_dir "$LIT_LM_DATA/wikitext-2"
              --model.lr 1.5e-3 --trainer.logger.init_args.save_dir "$RUNS" --data.cache_dir "$RUNS/cache")
  if [ "$CPU" = 1 ]; then
    args+=(--trainer.accelerator cpu --model.config tiny --trainer.precision 32-true --data.batch_size 32
           --data.num_workers 1 --trainer.max_time 00:00:00:20 --trainer.val_check_interval 10
           --trainer.limit_val_batches 2)
  else
    args+=(--trainer.accelerator gpu --data.batch_size 128 --data.num_workers 6 --trainer.max_time 00:00:02:30)
  fi
  "$PY" -m lit_lm "${args[@]}" && ls -l "$CKPT"
}

# ---- glue: the random and pretrained arms side by side (each harness runs its tasks in one process), then the table
glue() {
  [ -f "$CKPT" ] || { echo "no checkpoint $CKPT: the budget section did not finish"; return 1; }
  local tasks extra
  if [ "$CPU" = 1 ]; then
    tasks=wnli,rte
    extra=(--trainer.accelerator cpu --trainer.precision 32-true --trainer.max_steps 2 --data.cache_dir "$RUNS/cache")
  else
    tasks=cola,sst2,mrpc,stsb,rte,wnli
    extra=(--trainer.accelerator gpu --trainer.max_time "00:00:00:${GPU_SH_GLUE_RUN_S:-6}" --data.cache_dir "$RUNS/cache")
  fi
  local common=(benchmarks/glue_pretraining_helps.py --pretrained "$CKPT" --data-dir "$LIT_LM_DATA/glue" --tasks "$tasks"
                --seeds 1 --save-dir "$RUNS/glue")
  local arms_s=$((SECTION_S - 25))  # what the arms may take: the table needs the rest
  for arm in random pretrained; do
    timeout -k 5 "$arms_s" "$PY" "${common[@]}" --arms "$arm" --out "$RUNS/glue_$arm.txt" -- "${extra[@]}" \
      >"$RUNS/glue_$arm.log" 2>&1 &
  done
  wait
  for arm in random pretrained; do echo "---- arm $arm (last lines)"; tail -n 25 "$RUNS/glue_$arm.log"; done
  # the table of both: every run is done, so the harnesses only read their results (a killed arm's runs would resume)
  "$PY" "${common[@]}" --arms random,pretrained --out "$OUT/glue.txt" -- "${extra[@]}"
}

# ---- loop: the Lightning fit loop against the bare step ----------------------------------------------------------
loop() {
  local rc=0
  if [ "$CPU" = 1 ]; then
    "$PY" benchmarks/loop_overhead.py --size tiny --batch 8 --steps 3 --warmup 1 --repeats 1 --threads 1 \
      --cache-dir "$RUNS/cache" --out "$OUT/loop_mini.txt" || rc=1
    "$PY" benchmarks/loop_overhead.py --size mini --batch 4 --steps 2 --warmup 1 --repeats 1 --threads 1 \
      --cache-dir "$RUNS/cache" --out "$OUT/loop_base.txt" || rc=1
  else
    "$PY" benchmarks/loop_overhead.py --device cuda --size mini --batch 128 --steps 100 --warmup 10 --repeats 2 \
      --cache-dir "$RUNS/cache" --out "$OUT/loop_mini.txt" || rc=1
    "$PY" benchmarks/loop_overhead.py --device cuda --size base --batch 64 --steps 40 --warmup 5 --repeats 2 \
      --cache-dir "$RUNS/cache" --out "$OUT/loop_base.txt" || rc=1
  fi
  return $rc
}

# ---- train_step: ours eager/compiled against transformers eager/sdpa ---------------------------------------------
train_step() {
  if [ "$CPU" = 1 ]; then
    "$PY" benchmarks/train_step.py --device cpu --size tiny --batch 8 --precision fp32 --compile off --repeats 1 \
      --steps 2 --warmup 1 --threads 1 --out "$OUT/train_step.txt"
  else
    "$PY" benchmarks/train_step.py --device cuda --size base --batch 256 --precision bf16 --compile both --repeats 2 \
      --steps 10 --warmup 3 --peak-tflops 790 --out "$OUT/train_step.txt"
  fi
}

export -f say setup tier budget glue loop train_step
say "gpu.sh: sections '$SECTIONS', budget ${BUDGET_S}s, $([ "$CPU" = 1 ] && echo "CPU rehearsal" || echo "GPU"); OUT=$OUT"
case " $SECTIONS " in *" setup "*) setup_wheels ;; esac
section setup 40 setup.log
section tier 150 tier.log
section budget 200 budget.log
section glue 140 -
section loop 60 -
section train_step 100 -

say "== summary"
printf '  %s\n' "${report[@]}"
say "files in $OUT:"
ls -l "$OUT" | tail -n +2
n=$(find "$OUT" -type f | wc -l)
((n > 8)) && say "WARNING: $n files in $OUT; the device call returns at most 8"
exec 1>&- 2>&-
wait "$TEE"
