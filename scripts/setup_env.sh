#!/usr/bin/env bash
# Create .venv (once) with the CPU build of torch and the training, deploy and dev extras.
#   PYTHON=python3.11 bash scripts/setup_env.sh    # another interpreter (the desktop side needs Python 3.10+)
#   TORCH_INDEX_URL=URL bash scripts/setup_env.sh  # where torch comes from (default: PyTorch's CPU index where it
#                                                  # answers, since PyPI's Linux torch is the CUDA build; else PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
too_old() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null && return 1 || return 0; }
if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found; install Python 3.10 or newer, or name one: PYTHON=python3.11 bash $0" >&2
  exit 2
fi
if too_old "$PYTHON"; then
  echo "error: $PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'); the desktop side (torch 2.13) needs 3.10 or newer: PYTHON=python3.11 bash $0" >&2
  exit 2
fi
if [ -x .venv/bin/python ] && too_old .venv/bin/python; then
  echo "setup: .venv has Python $(.venv/bin/python -c 'import platform; print(platform.python_version())'), too old for torch 2.13; making it again with $PYTHON" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
# once per change of the package's metadata: a rerun (each pipeline.sh) skips pip and its build warnings
STAMP=.venv/.cosinegate-setup
WANT=$(cat setup.cfg setup.py pyproject.toml scripts/setup_env.sh | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
# checked from / : in the checkout, the cosinegate folder would import without being installed
if [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && [ -x .venv/bin/cosinegate ] \
    && (cd / && python -c "import importlib.metadata as m, torch; m.distribution('cosinegate-edge')") 2>/dev/null; then
  exit 0
fi
python -m pip install -q --upgrade pip >/dev/null
# The CPU build first, so nothing below can pull a CUDA build of torch.
if ! python -c "import torch" 2>/dev/null; then
  CPU_INDEX=https://download.pytorch.org/whl/cpu
  if [ -z "${TORCH_INDEX_URL+set}" ] && python -c "import urllib.request as u; u.urlopen('$CPU_INDEX/torch/', timeout=5)" 2>/dev/null; then
    TORCH_INDEX_URL=$CPU_INDEX
  fi
  python -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
python -m pip install -q -e ".[training,deploy,dev]"
echo "$WANT" > "$STAMP"
