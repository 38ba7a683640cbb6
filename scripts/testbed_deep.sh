#!/usr/bin/env bash
# One seed of the `deep` testbed comparison (docs/results-testbed.md), from a fresh clone, on a 2-core CPU:
#   scripts/testbed_deep.sh SEED [OUT]        (OUT defaults to outputs/testbed-deep-SEED)
# 1. train the 24-layer testbed model (seed SEED: its weights, data and order);
# 2. compare every strategy at 10/15/20/25%, fine-tuned rows (rate chosen on a validation split, INTERLACE + KD /
#    + LoRA) at 25% only (the compare seed is SEED too: fine-tune and calibration data, Random's draws);
# 3. the oracle: 200 random drop sets at 25%, and where each method's set ranks.
# Every step is resumable: a rerun continues where it stopped. Measured on the 2-core CPU (2026-12-01, one thread,
# beside a second job): training ~80 min, the no-fine-tune rows ~50, the fine-tuned 25% rows ~70; the oracle 26 min
# at two threads.
# Then, over seeds:
#   interlace-hf testbed summary outputs/testbed-deep-summary --results outputs/testbed-deep-{0,1,2}
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:?usage: scripts/testbed_deep.sh SEED [OUT]}"
OUT="${2:-outputs/testbed-deep-$SEED}"
scripts/setup.sh
VENV="${INTERLACE_HF_VENV:-.venv}"
# two cores: torch's two threads, nothing else running beside it (a second busy process slows both several-fold)
export PATH="$PWD/$VENV/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
interlace-hf testbed train "$OUT" --size deep --seed "$SEED"
interlace-hf testbed compare "$OUT" --drop-ratios 0.10 0.15 0.20 0.25 --finetune-ratios 0.25 --seed "$SEED"
interlace-hf testbed oracle "$OUT" --drop-ratio 0.25 --samples 200 --num-questions 600
