#!/usr/bin/env bash
# Download, into .whl/ (git-ignored), the wheels the device machine lacks for scripts/gpu_check.sh: its image has
# torch 2.11 and transformers 5.17, and no trl / datasets (see /work/.library/device/KINDS.md). Then run the check
# with `.whl` carried (see scripts/gpu_check.sh). Prints the total size (a device call carries at most 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
# The versions this repo is tested with (setup.cfg floors are lower); the device's own numpy, pandas, pyarrow,
# huggingface_hub, tokenizers, safetensors and accelerate are used as they are.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl transformers==5.24.0 trl==1.16.0 datasets==5.2.0 "dill==0.4.0" "multiprocess==0.70.18"
ls -1 .whl
du -sh .whl
