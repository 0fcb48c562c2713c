#!/usr/bin/env bash
# Create .venv (once) with the CPU build of torch and the training, deploy and dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
# The CPU build first, so nothing below can pull a CUDA build of torch.
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[training,deploy,dev]"
