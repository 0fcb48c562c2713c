#!/usr/bin/env bash
# Fresh machine: set up .venv and run the whole test suite (arguments go to pytest, e.g. tests/onnx -k export).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
# one worker per core, each test file on one worker (its module fixtures made once); -n 0 runs them in this process
python -m pytest -q -n auto --dist loadfile "$@"
