#!/usr/bin/env python
"""Build a TensorRT engine for a target board, or the bundle the board needs to build it.

    python deploy/build_engine.py --target jetson-orin --checkpoint CKPT
    python deploy/build_engine.py --target jetson-orin --checkpoint CKPT --precision int8 --int8 cache --calib-cache calib.cache
    python deploy/build_engine.py --target jetson-orin --bundle engines/jetson-orin/model-bundle    # on the device

From a checkpoint it exports the ONNX forms (and runs INT8 calibration when asked), reusing
artifacts whose input hashes match (stage records under <out>/.work/). When TensorRT is
importable and this host matches the target (arch, compute capability, TensorRT release), it
builds engines/<target>/<model>-<form>-<precision>-trt<ver>-sm<cc>.engine with Polygraphy, writes
<engine>.json and checks parity against the saved PyTorch reference with TrtRunner
(<engine>.parity.json). Otherwise it writes the device bundle engines/<target>/<model>-bundle/
(+ .tar.gz) and prints what to copy and run on the device; --require-engine makes that an error.
Exit status: 0 done, 1 engine parity failed, 2 bad input (nothing half-written).
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.build_engine import main

if __name__ == "__main__":
    run_main(main)
