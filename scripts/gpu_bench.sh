#!/usr/bin/env bash
# One lent-GPU check (about 4 minutes on an H200): SD-1.5-architecture UNet with random weights
# (no download), 512x512 images (64x64 latents), CFG 7.5, fp16 then bf16; seconds per DOODL
# optimisation step (reversible and checkpoint engines) for EDICT and BDIA, generation time, and
# peak memory at T = 10 and T = 50. Writes $OUT/gpu_bench.json (and the printed table).
#   device run:  bash scripts/gpu_bench.sh            (OUT is set by the device tool)
#   CPU dry run: OUT=/tmp/gb DEVICE=cpu SMALL=1 bash scripts/gpu_bench.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [ -n "${SMALL:-}" ]; then
  model=() dtypes=(float32)
else
  model=(--sd15) dtypes=(float16 bfloat16)
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
timeout "${LIMIT:-420}" $PY scripts/bench_engines.py "${model[@]}" --device "${DEVICE:-cuda}" \
  --dtype "${dtypes[@]}" --samplers edict bdia --engines reversible checkpoint \
  --steps 10 50 --repeat "${REPEAT:-2}" --out "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.txt"
echo "exit ${PIPESTATUS[0]}"
