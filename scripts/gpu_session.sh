#!/usr/bin/env bash
# What this project ran on a lent GPU (one call): retrain the CLIP, aesthetic-head and
# text-to-image recipes exactly as configured (accelerator switched to gpu), run the Shapes-64
# benchmark (DOODL step size tuned on the tuning split, then 32 held-out items per application,
# the four applications in parallel processes), and the SD-1.5-architecture engine benchmark.
# Results land in $OUT.   Knobs (for a dry run on CPU): ACCEL, CLIP_STEPS, AES_STEPS, T2I_STEPS,
# T2I_N, N, TUNE_N, EXPORT, PY, NO_WHEELS.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
OUT=${OUT:-/tmp/gpu_out}
ACCEL=${ACCEL:-gpu}
PY=${PY:-python3}
W=${WORK:-/tmp/gpu_work}
mkdir -p "$OUT" "$W"
log() { echo "[$(date +%T)] $*"; }
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
$PY -c "import torch, diffusers, open_clip, lightning, timm; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
train() {  # model, time limit (s), extra args...
  local m=$1 limit=$2; shift 2
  log "train $m"
  timeout "$limit" $PY -m doodl_pl.shapes64.train fit --config "configs/shapes64/train_$m.yaml" \
    --trainer.accelerator "$ACCEL" --trainer.enable_progress_bar false \
    --trainer.logger.init_args.save_dir "$W/logs" \
    ${EXPORT:+--model.init_args.export_dir "$EXPORT"} "$@" > "$W/train_$m.log" 2>&1
  log "train $m: exit $? ($(tail -c 300 "$W/train_$m.log" | tr '\n' ' ' | tail -c 200))"
}
# 1. Models. The text-to-image model does not depend on CLIP: train both chains side by side.
( train t2i 270 --trainer.max_time 00:00:04:10 ${T2I_STEPS:+--trainer.max_steps $T2I_STEPS} ${T2I_N:+--data.n $T2I_N} ) &
( train clip 180 --trainer.max_time 00:00:02:40 ${CLIP_STEPS:+--trainer.max_steps $CLIP_STEPS}
  train aesthetic 70 --trainer.max_time 00:00:00:50 ${AES_STEPS:+--trainer.max_steps $AES_STEPS} ) &
wait
# 2. Benchmark: one process per application.
for app in text vocabulary personalization aesthetic; do
  log "benchmark $app"
  timeout 300 $PY scripts/benchmark_shapes64.py --apps "$app" --n "${N:-32}" --accelerator "$ACCEL" \
    --tune-lr 0.25 0.5 1.0 --tune-n "${TUNE_N:-8}" --out "$W/bench" > "$W/bench_$app.log" 2>&1 &
done
wait
log "benchmark done"
# 3. Engines at SD-1.5 size.
timeout 75 $PY scripts/bench_engines.py --sd15 --device "$([ "$ACCEL" = gpu ] && echo cuda || echo cpu)" \
  --repeat 2 > "$W/engines_sd15.log" 2>&1
log "engines: exit $?"
# 4. Bring back: weights (one tar each for sd and clip+head) and everything else.
A=${EXPORT:-doodl_pl/assets/shapes64}
tar -cf "$OUT/sd.tar" -C "$A" sd/unet sd/text_encoder sd/model_index.json 2>/dev/null
tar -cf "$OUT/clip.tar" -C "$A" clip aesthetic_head.safetensors 2>/dev/null
tar -czf "$OUT/results.tgz" -C "$W" . 2>/dev/null
ls -la "$OUT"
