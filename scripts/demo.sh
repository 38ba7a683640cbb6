#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone, on a CPU in a couple of minutes:
# a tiny Qwen3-VL and a synthetic calibration set (both made locally), step 1 (similarities), step 2 (the INTERLACE
# plan, 25% drop, with its layer map and plot), the pruned checkpoint, and a check that it computes exactly what
# the dense model computes with the dropped layers skipped, then the selective fine-tune (step 3).
# Outputs go to ${OUT:-outputs/demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${INTERLACE_HF_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-outputs/demo}"
interlace-hf tiny "$OUT/tiny" --num-layers 12 --seed 0 --overwrite
interlace-hf data synthetic "$OUT/data" --num 200 --seed 0 --overwrite
interlace-hf similarity --model "$OUT/tiny" --data "$OUT/data/synthetic.json" --output-dir "$OUT/similarity" \
    --sample-fraction 0.5 --batch-size 8 --overwrite
interlace-hf plan --similarities "$OUT/similarity" --strategy interlace --drop-ratio 0.25 \
    --output "$OUT/plan.json" --plot "$OUT/plan.png"
interlace-hf prune "$OUT/tiny" --plan "$OUT/plan.json" --output-dir "$OUT/tiny-interlace-25pc" --overwrite
interlace-hf verify "$OUT/tiny" "$OUT/tiny-interlace-25pc"
# step 3: fine-tune only the plan's tuned layers (recipes/tiny.yaml reads the files written above)
rm -rf "$OUT/tiny-interlace-25pc-ft"  # a fresh fine-tune of the fresh pruned model (a rerun would resume otherwise)
interlace-hf train --config recipes/tiny.yaml --model "$OUT/tiny-interlace-25pc" \
    --dataset "$OUT/data/synthetic.json" --output_dir "$OUT/tiny-interlace-25pc-ft"
echo "demo: pruned checkpoint in $OUT/tiny-interlace-25pc, fine-tuned in $OUT/tiny-interlace-25pc-ft;"
echo "      plan and layer-map plot in $OUT/plan.json, $OUT/plan.png"
