#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone, on a CPU in about a minute:
# build the tiny Qwen3-VL, prune 25% of its decoder layers (including one that receives deepstack features),
# then check the pruned checkpoint computes exactly what the base computes with those layers skipped.
# Outputs go to ${OUT:-outputs/demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${INTERLACE_HF_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-outputs/demo}"
interlace-hf tiny "$OUT/tiny" --num-layers 12 --seed 0 --overwrite
interlace-hf prune "$OUT/tiny" --drop-layers 1,5,9 --output-dir "$OUT/tiny-pruned-25pc" --overwrite
interlace-hf verify "$OUT/tiny" "$OUT/tiny-pruned-25pc"
echo "demo: pruned checkpoint in $OUT/tiny-pruned-25pc (plan.json, config.json, weights, processor)"
