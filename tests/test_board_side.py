"""The board side past the no-TensorRT branch, with `import torch` failing (as on a Jetson without PyTorch).

A stand-in TensorRT host (tests/trt_recorder.py's kind of fake: it drives version branches and plumbing, it is never
evidence that a build works) lets build_engine.py --bundle reach build_one; bench.py --if-cost --backend trt,
calibration/data_loader.py and the host detection run as the board runs them.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from test_bundle import bundle_copy, bundled  # noqa: F401 (fixtures)

WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_code(code, *args, env=None):
    """Run ``code`` (torch blocked first) in a fresh interpreter from the repository root."""
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH + code, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)


BUNDLE_BUILD = """
import importlib.util, json
sys.path.insert(0, 'deploy')
spec = importlib.util.spec_from_file_location('build_engine', 'deploy/build_engine.py')
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
import cosinegate.trt.build as trt_build
from cosinegate.trt.targets import HostInfo
from cosinegate.trt.versions import parse_version
trt_build.detect_host = lambda: HostInfo('aarch64', '8.7', parse_version('8.5.2.2'))

def fake_build(onnx_path, engine_path, settings):  # Polygraphy + TensorRT's part: not here
    open(str(engine_path), 'wb').write(b'not an engine')
    return 0.25

trt_build.build_engine = fake_build
script.engine_parity = lambda engine, inputs, reference, precision: {'passed': True, 'stand_in': True}
from cosinegate.cli import run_main
try:
    run_main(lambda: script.main(sys.argv[1:]))
finally:
    print('torch blocked:', sys.modules['torch'] is None)
"""


def test_bundle_build_reaches_the_engine_manifest_without_torch(bundle_copy, tmp_path):  # noqa: F811
    """Defect 2: build_one imported cosinegate.onnx.card, whose package imports export.py and torch."""
    out = tmp_path / "engines"
    done = run_code(BUNDLE_BUILD, "--target", "jetson-orin", "--bundle", bundle_copy, "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch blocked: True" in done.stdout
    engine = out / "tiny-conditional-fp16-trt8.5.2.2-sm87.engine"
    manifest = json.loads((out / f"{engine.name}.json").read_text())
    assert manifest["card"]["classes"] and manifest["trt_version"] == "8.5.2.2"
