#!/usr/bin/env bash
# The dependency floors, checked: a second virtualenv (default .venv-floors) with exactly scripts/floors.txt, then a
# smoke subset of the tests (load both formats, prune, train a few steps in bf16 and fp32). CI runs this after
# scripts/test.sh. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INTERLACE_HF_FLOORS_VENV:-.venv-floors}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.floors-installed"
want="$(sha256sum scripts/floors.txt | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  echo "test_floors: installing scripts/floors.txt into $VENV" >&2
  # torch first, pinned: on a CPU machine that is the CPU build, and nothing later pulls a CUDA torch.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$(grep '^torch==' scripts/floors.txt)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/floors.txt
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c "import transformers, trl; print('test_floors: transformers', transformers.__version__, '| trl', trl.__version__)" >&2
# The package from this checkout, not installed (an editable install would write into the tree).
export PYTHONPATH="$PWD" TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_modeling.py tests/test_surgery.py \
  tests/test_checkpoint.py tests/test_trainer.py tests/test_train_real_path.py \
  -k "not zero3 and not two_processes and not push_during" "$@"
