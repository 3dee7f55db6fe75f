#!/usr/bin/env bash
# Retrain every Shapes-64 model from scratch (or resume): VAE, its decoder-only fine-tune, CLIP, its
# entity fine-tune (frozen text tower), the text-to-image model (its frozen text encoder is CLIP's
# text tower, so retrain it after CLIP), guide classifier, aesthetic head, evaluation classifier.
# `clip_hn` (the hard-negative CLIP experiment), `clip_rel`, `clip_rel_words` then
# `clip_rel_robust` (the relation CLIP, in three stages; `clip_rel_scratch` is an older first
# stage), `classifier_robust` (the robust guide option), `classifier_adv` (it, fine-tuned
# adversarially) and `verifier` (a verifier tried and
# not shipped) train only when named.
# Each recipe checkpoints under checkpoints/shapes64/<model>/ and resumes from last.ckpt when
# rerun; a recipe whose export (or, for a fine-tune that replaces a shipped model, whose installed
# file) already exists is skipped: pass --force to retrain.
# Exports go to doodl_pl/assets/shapes64/.   Usage: bash scripts/train_shapes64.sh [--force] [model ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(vae vae_decoder clip clip_entity t2i classifier aesthetic eval_classifier)
# Checkpoints live outside the work tree so that a fresh checkout can still resume.
mkdir -p "$HOME/.cache/doodl_pl/checkpoints"
[ -e checkpoints ] || ln -s "$HOME/.cache/doodl_pl/checkpoints" checkpoints
A=doodl_pl/assets/shapes64
declare -A export=(
  [vae]=$A/sd/vae/diffusion_pytorch_model.safetensors
  [t2i]=$A/sd/model_index.json
  [clip]=$A/clip/shapes64-clip.safetensors
  [clip_hn]=$A/clip_hn/shapes64-clip-hn.safetensors
  [clip_rel]=outputs/models/clip_rel_stage1/shapes64-clip-rel.safetensors
  [clip_rel_scratch]=outputs/models/clip_rel_scratch/shapes64-clip-rel.safetensors
  [clip_rel_robust]=outputs/models/clip_rel_robust/shapes64-clip-rel.safetensors
  [clip_rel_words]=outputs/models/clip_rel_words/shapes64-clip-rel.safetensors
  [clip_entity]=outputs/models/clip_entity/shapes64-clip-entity.safetensors
  [vae_decoder]=outputs/models/vae_decoder/diffusion_pytorch_model.safetensors
  [classifier]=$A/classifier.safetensors
  [classifier_robust]=$A/classifier_robust.safetensors
  [verifier]=outputs/models/verifier/verifier.safetensors
  [classifier_adv]=outputs/models/classifier_adv/classifier_adv.safetensors
  [eval_classifier]=$A/eval_classifier.safetensors
  [aesthetic]=$A/aesthetic_head.safetensors
)
# Fine-tunes that replace a shipped model once trained (issue 28): the decoder-only VAE fine-tune
# (same encoder, same latents), the entity CLIP (same text tower, the t2i text encoder) and the
# robust relation CLIP (issue 25).
# The decoder's config.json is unchanged by the fine-tune (same encoder, same scaling factor).
declare -A install=(
  [vae_decoder]=$A/sd/vae/diffusion_pytorch_model.safetensors
  [clip_entity]=$A/clip/shapes64-clip.safetensors
  [clip_rel_robust]=$A/clip_rel/shapes64-clip-rel.safetensors
)
for m in "${models[@]}"; do
  ckpt=checkpoints/shapes64/$m/last.ckpt
  done_file=${install[$m]:-${export[$m]}}
  # A fine-tune killed before its export resumes, although the file it replaces exists.
  if [ -f "$ckpt" ] && [ ! -f "${export[$m]}" ]; then done_file=${export[$m]}; fi
  if [ $force = 0 ] && [ -f "$done_file" ]; then echo "== $m: exported, skipping"; continue; fi
  resume=()
  if [ -f "$ckpt" ] && [ $force = 0 ]; then resume=(--ckpt_path "$ckpt"); fi
  echo "== $m: training ($(date +%T))"
  start=$(date +%s)
  .venv/bin/doodl-pl-train fit --config "configs/shapes64/train_$m.yaml" "${resume[@]}"
  echo "== $m: done in $(( $(date +%s) - start )) s"
  if [ -n "${install[$m]:-}" ] && [ -f "${export[$m]}" ]; then
    cp "${export[$m]}" "${install[$m]}"
    echo "== $m: installed as ${install[$m]}"
  fi
done
