#!/usr/bin/env bash
# The GPU check of the fine-tune and the bench, in ONE call (under 8 minutes on an H200). Writes JSON files (device,
# date, versions and command inside each) into OUT_DIR (default docs/results/gpu):
#   bench_train_8b.json  random-weight Qwen3-VL-8B shape, bf16: INTERLACE fine-tune (SFT) vs SFT + distillation from
#                        the dense model vs LoRA on one GPU (step time next to its FLOP ideal, peak memory, tuned
#                        weights moved at lr 1e-5)
#   bench_train_4b.json  INTERLACE vs full fine-tune at the 4B shape (where full fine-tuning fits)
#   bench_ttft_8b.json   `interlace-hf bench`: TTFT of the base and the 25% model, with --compare-stock
#   bench_ttft_8b_1344.json  the same with a large prompt: a 1344 px image
#   similarity_8b.json   the similarity pass on the 8B shape, bf16, 256 synthetic 448 px samples: samples/s, peak
#                        memory, projected time for the paper's 24K samples
#   gpu_check.log        everything printed
#
#   scripts/gpu_check.sh [OUT_DIR]               on the machine with the GPU
#   scripts/gpu_check.sh --cpu-smoke [OUT_DIR]   the same code paths at tiny shapes on the CPU (CI runs this)
#
# On the device machine (see /work/.library/device/README.md): run scripts/gpu_wheels.sh here first, then
#   run(command="bash scripts/gpu_check.sh $OUT", carry=[".whl"], timeout_s=540)
# and copy the files back into docs/results/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=0
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=1; shift; fi
OUT_DIR="${1:-docs/results/gpu}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if [ "$SMOKE" = 1 ]; then
  PY="${INTERLACE_HF_VENV:-.venv}/bin/python"
  [ -x "$PY" ] || PY="$(scripts/setup.sh >/dev/null && echo "${INTERLACE_HF_VENV:-.venv}/bin/python")"
  export OMP_NUM_THREADS=1
else
  PY="${PYTHON:-python3}"
  if compgen -G ".whl/*.whl" >/dev/null; then  # the device image lacks trl / datasets and has an older transformers
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  fi
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"  # interlace_hf from this checkout, installed or not
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1

"$PY" - <<'PY'
import torch, transformers, trl, datasets
print("torch", torch.__version__, "| transformers", transformers.__version__, "| trl", trl.__version__,
      "| datasets", datasets.__version__, "| cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
PY

start=$(date +%s)
if [ "$SMOKE" = 1 ]; then
  # Tiny shapes: the tiny model for the fine-tune, its config (random weights) for the TTFT bench.
  WORK="$(mktemp -d)"
  "$PY" -m interlace_hf tiny "$WORK/tiny" --num-layers 12 --seed 0 >/dev/null
  "$PY" scripts/bench_train.py --steps 2 --repeats 1 --batch-size 2 --output "$OUT_DIR/bench_train_tiny.json"
  "$PY" -m interlace_hf bench --random-weights --config "$WORK/tiny/config.json" base 25pc --compare-stock \
    --image-size 64 --new-tokens 2 --repeats 1 --warmup 0 --dtype float32 --device cpu \
    --output "$OUT_DIR/bench_ttft_tiny.json"
  "$PY" -m interlace_hf bench --random-weights --config "$WORK/tiny/config.json" base 25pc \
    --image-size 128 --new-tokens 2 --repeats 1 --warmup 0 --dtype float32 --device cpu \
    --output "$OUT_DIR/bench_ttft_tiny_large.json"
  "$PY" scripts/bench_similarity.py --throughput "$WORK/tiny/config.json" --records 8 --batch-size 4 --image-size 64 \
    --device cpu --output "$OUT_DIR/similarity_tiny.json"
  rm -rf "$WORK"
else
  "$PY" scripts/bench_train.py --config qwen3-vl-8b --dtype bfloat16 --image-size 448 --batch-size 4 --steps 5 \
    --repeats 1 --learning-rate 1e-5 --modes interlace kd lora --output "$OUT_DIR/bench_train_8b.json"
  echo "elapsed: $(( $(date +%s) - start )) s"
  "$PY" scripts/bench_train.py --config qwen3-vl-4b --dtype bfloat16 --image-size 448 --batch-size 4 --steps 5 \
    --repeats 1 --learning-rate 1e-5 --modes interlace full --output "$OUT_DIR/bench_train_4b.json"
  echo "elapsed: $(( $(date +%s) - start )) s"
  "$PY" -m interlace_hf bench --random-weights --config qwen3-vl-8b base 25pc --compare-stock \
    --image-size 448 --dtype bfloat16 --repeats 5 --output "$OUT_DIR/bench_ttft_8b.json"
  echo "elapsed: $(( $(date +%s) - start )) s"
  "$PY" -m interlace_hf bench --random-weights --config qwen3-vl-8b base 25pc \
    --image-size 1344 --dtype bfloat16 --repeats 5 --output "$OUT_DIR/bench_ttft_8b_1344.json"
  echo "elapsed: $(( $(date +%s) - start )) s"
  "$PY" scripts/bench_similarity.py --throughput qwen3-vl-8b --records 256 --batch-size 8 --image-size 448 \
    --dtype bfloat16 --output "$OUT_DIR/similarity_8b.json"
fi
echo "gpu_check: done in $(( $(date +%s) - start )) s; results in $OUT_DIR"
