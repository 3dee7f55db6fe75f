#!/usr/bin/env bash
# One lent-GPU check (about 6 minutes on an H200 with DTYPES=float16). First one real DOODL step
# per backbone at its real size (SD 1.5 512², SD 2.1 768², SDXL 1024²; float16, CLIP ViT-L/14
# with 16 cuts, random weights) with memory levers: seconds per step and the allocator's peak
# next to the sizing estimate, in $OUT/size_step.json. Then the engine bench: SD-1.5-architecture
# UNet with random weights (no download), 512x512 images (64x64 latents), CFG 7.5, fp16 then
# bf16; seconds per DOODL optimisation step (reversible and checkpoint engines) for EDICT and
# BDIA, generation time, and peak memory at T = 10 and T = 50, in $OUT/gpu_bench.json.
#   device run:  bash scripts/gpu_bench.sh            (OUT is set by the device tool)
#   CPU dry run: OUT=/tmp/gb DEVICE=cpu SMALL=1 bash scripts/gpu_bench.sh
# The lent H200's image has torch, lightning, timm, transformers and torchmetrics: before the
# run, `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
# manylinux2014_x86_64 -d .whl diffusers open_clip_torch ftfy wcwidth` here and name `.whl` in
# the device run's carry; the script installs what it finds there. Knobs: DTYPES (UNet dtypes of
# the engine bench), LIMIT and SIZE_LIMIT (seconds for each part), REPEAT. The real-size step
# runs first: it answers what a user asks before renting a card.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${SMALL:-}" ]; then
  model=() dtypes=(float32)
else
  model=(--sd15)
  read -ra dtypes <<< "${DTYPES:-float16 bfloat16}"
fi
if ! $PY -c "import diffusers" 2>/dev/null && [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
$PY -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())"
if [ -z "${SMALL:-}" ]; then
  timeout "${SIZE_LIMIT:-280}" $PY scripts/size_step.py --device "${DEVICE:-cuda}" \
    --engines reversible --levers none vae-ckpt all all+bdia --steps 10 \
    --json "$OUT/size_step.json" 2>&1 | tee "$OUT/size_step.txt"
  echo "exit ${PIPESTATUS[0]}"
fi
timeout "${LIMIT:-240}" $PY scripts/bench_engines.py "${model[@]}" --device "${DEVICE:-cuda}" \
  --dtype "${dtypes[@]}" --samplers edict bdia --engines reversible checkpoint \
  --steps 10 50 --repeat "${REPEAT:-2}" --out "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/gpu_bench.txt"
echo "exit ${PIPESTATUS[0]}"
