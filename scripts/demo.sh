#!/usr/bin/env bash
# The offline Shapes-64 demo: vanilla sampling vs DOODL on the same prompts and seeds, then a
# side-by-side grid.   Usage: bash scripts/demo.sh [text|vocabulary|personalization|aesthetic]
set -euo pipefail
cd "$(dirname "$0")/.."
app=${1:-text}
case "$app" in text|vocabulary|personalization|aesthetic) ;; *)
  echo "usage: bash scripts/demo.sh [text|vocabulary|personalization|aesthetic]" >&2; exit 2;;
esac
bash scripts/setup.sh
if [ ! -f doodl_pl/assets/shapes64/sd/model_index.json ]; then
  echo "The Shapes-64 models are not in doodl_pl/assets/shapes64 yet: train them with" >&2
  echo "  bash scripts/train_shapes64.sh" >&2
  exit 1
fi
export PYTHONWARNINGS=ignore
# The DOODL column's label, read from its config: a best-of-k start says so.
label=$(.venv/bin/python -c '
import sys, yaml
m = yaml.safe_load(open(sys.argv[1]))["model"]["init_args"]
k = m.get("init_candidates", 1)
print("DOODL (best-of-%d start, %d steps)" % (k, m["opt_steps"]) if k > 1 else "DOODL")' "configs/demo/${app}.yaml")
.venv/bin/doodl-pl fit --config "configs/demo/${app}_vanilla.yaml"
.venv/bin/doodl-pl fit --config "configs/demo/${app}.yaml"
grid=$(.venv/bin/doodl-pl grid "outputs/demo/${app}_vanilla" "outputs/demo/${app}" \
  --labels "vanilla" "$label" --out "outputs/demo/${app}_grid.png")
echo
echo "Vanilla images:     outputs/demo/${app}_vanilla/images/"
echo "DOODL images:       outputs/demo/${app}/images/  (trajectories: outputs/demo/${app}/trajectories/)"
echo "Side-by-side grid:  ${grid}"
echo "Loss curves, trajectories, run metrics:  .venv/bin/tensorboard --logdir outputs/demo/${app}/logs"
echo "  (also outputs/demo/${app}/metrics.csv and run_metrics.json; the run folder loads with"
echo "   datasets.load_dataset(\"imagefolder\", data_dir=\"outputs/demo/${app}\"))"
