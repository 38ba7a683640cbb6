#!/usr/bin/env bash
# The main job on the embedded default, from a fresh clone, on a CPU in a few minutes:
#   interlace-hf run --config recipes/run/tiny.yaml
# builds the tiny Qwen3-VL and synthetic data here, then similarity -> INTERLACE plan (25%) -> prune -> fine-tune the
# tuned layers -> eval vs the base -> bench -> model card, and checks that the pruned checkpoint computes exactly
# what the base computes with the dropped layers skipped. Outputs go to ${OUT:-outputs/demo}; a rerun continues.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${INTERLACE_HF_VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-outputs/demo}"
interlace-hf run --config recipes/run/tiny.yaml --output-dir "$OUT"
interlace-hf verify "$OUT/base" "$OUT/pruned" --image-size 64
