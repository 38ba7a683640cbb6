#!/usr/bin/env bash
# Set up interlace-hf in a virtualenv (default .venv; override with INTERLACE_HF_VENV) and print its path.
#
# - torch is installed FIRST, pinned to 2.13.0, only when no torch is importable: on a CPU-only machine that resolves
#   to the CPU build, and nothing later can pull a newer CUDA torch. Where the python running this already has torch
#   (a GPU box), the virtualenv sees it (--system-site-packages) and it is kept as it is.
# - torchvision is never installed: interlace-hf does not need it.
# - Re-running is cheap: the install is skipped while setup.cfg is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INTERLACE_HF_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${INTERLACE_HF_EXTRAS:-test,plot}"

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "setup: torch found in $("$PYTHON" -c 'import sys; print(sys.executable)'); keeping it" >&2
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
stamp="$VENV/.interlace-hf-installed"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c "import interlace_hf" >/dev/null 2>&1; then
  exit 0
fi
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 first (the CPU build where there is no GPU)" >&2
  pip_install "torch==2.13.0"
fi
echo "setup: installing interlace-hf[$EXTRAS] (editable)" >&2
# DeepSpeed builds from its sdist; DS_BUILD_OPS=0 skips compiling its CUDA ops (JIT-built on first use instead).
DS_BUILD_OPS=0 pip_install -e ".[$EXTRAS]"
"$PY" -c "import torch, transformers, interlace_hf; print('setup: torch', torch.__version__, '| transformers', transformers.__version__, '| interlace-hf', interlace_hf.__version__)" >&2
echo "$want" > "$stamp"
