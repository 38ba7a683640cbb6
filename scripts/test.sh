#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets up the virtualenv (scripts/setup.sh), then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k export -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${INTERLACE_HF_VENV:-.venv}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest tests -q "$@"
