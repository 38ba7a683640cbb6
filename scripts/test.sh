#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets up the virtualenv (scripts/setup.sh), then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k export -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${INTERLACE_HF_VENV:-.venv}"
# No HF_HUB_OFFLINE: the tests run their own Hub on 127.0.0.1 (tests/hub_server.py) and point HF_ENDPOINT at it.
# One thread per op: on 2 cores, two OpenMP threads per process make the tiny models ~10x slower under load.
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
exec "$VENV/bin/python" -m pytest tests -q "$@"
