"""Device-side code runs on JetPack's Python (3.8 on JetPack 5.1, 3.10 on JetPack 6) without PyTorch.

The device side is what `build_engine.py --bundle`, `bench.py --engine`, device parity and the bundle's
script import. Checked statically with vermin (minimum Python 3.8) and by importing it in a process where
`import torch` fails; the commands themselves run torch-free in tests/trt/test_bundle.py.
"""

import subprocess
import sys

import pytest

from conftest import ROOT

from cosinegate.trt.device_script import manifest_writer

DEVICE_MODULES = [
    "cosinegate/__init__.py", "cosinegate/errors.py", "cosinegate/lazy.py", "cosinegate/artifacts.py", "cosinegate/cli/__init__.py",
    "cosinegate/minitoml.py", "cosinegate/graphmeta.py", "cosinegate/schema.py", "cosinegate/trtversion.py",
    "cosinegate/layernames.py", "cosinegate/macs.py",
    "cosinegate/models/__init__.py", "cosinegate/models/backbones.py",
    "cosinegate/data/__init__.py", "cosinegate/data/imageset.py", "cosinegate/data/resize.py",
    "cosinegate/parity/__init__.py", "cosinegate/parity/compare.py",
    "cosinegate/bench/__init__.py", "cosinegate/bench/backends.py", "cosinegate/bench/report.py", "cosinegate/bench/candidates.py",
    "cosinegate/runtime/__init__.py", "cosinegate/runtime/base.py", "cosinegate/runtime/onnxruntime_backend.py",
    "cosinegate/runtime/tensorrt_backend.py", "cosinegate/bench/tegrastats.py", "cosinegate/bench/ifcost.py", "cosinegate/bench/graphs.py",
    "cosinegate/blockkinds.py", "cosinegate/quant/__init__.py", "cosinegate/quant/calibset.py", "cosinegate/data/choice.py", "cosinegate/onnx/__init__.py", "cosinegate/onnx/card.py", "cosinegate/onnx/checks.py",
    "cosinegate/onnx/conditionalize.py", "cosinegate/onnx/costtable.py", "cosinegate/onnx/export.py", "cosinegate/onnx/passes.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cosinegate" / "trt").glob("*.py")),
    "cosinegate/cli/build_engine.py", "cosinegate/cli/bench.py", "cosinegate/defaults.py", "cosinegate/manifests.py",
    *(f"cosinegate/pipeline/{name}.py" for name in ("__init__", "plan", "deploy", "board", "engine", "bench")),
    "deploy/_bootstrap.py", "deploy/build_engine.py", "deploy/bench.py",
]
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"  # `import torch` raises ImportError


def vermin(paths):
    command = "import sys; from vermin.main import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", command, "--no-tips", "--violations", "-t=3.8-", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT)


def test_device_modules_need_at_most_python_3_8():
    done = vermin(DEVICE_MODULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scripts_manifest_writer_needs_at_most_python_3_8(tmp_path):
    program = tmp_path / "manifest_writer.py"
    program.write_text(manifest_writer({"settings": {}}))
    done = vermin([program])
    assert done.returncode == 0, done.stdout


def test_vermin_catches_a_newer_construct(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text('name = "block0".removeprefix("block")\n')
    assert vermin([newer]).returncode != 0


def _module_name(path):
    if path.startswith("deploy/"):
        return None
    return path[:-3].replace("/", ".").replace(".__init__", "")


@pytest.mark.parametrize("path", [p for p in DEVICE_MODULES if _module_name(p)])
def test_device_module_imports_without_torch(path):
    code = WITHOUT_TORCH + f"import {_module_name(path)}\nassert sys.modules['torch'] is None\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_device_parity_pieces_work_without_torch():
    code = WITHOUT_TORCH + (
        "import numpy as np\n"
        "from cosinegate.parity import PROFILES, agreement_report\n"
        "from cosinegate.macs import mac_table\n"
        "ref = {'logits': np.eye(4, dtype=np.float32), 'gates': np.ones((4, 9), np.float32)}\n"
        "out = {'logits': ref['logits'] + 1e-3, 'gates': ref['gates'].copy()}\n"
        "assert agreement_report(ref, out, PROFILES['fp16'])['passed']\n"
        "assert not agreement_report(ref, out, PROFILES['fp32'])['passed']\n"
        "assert mac_table('resnet20', 'predictive').dense > 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_polygraphy_049_compare_func_path(monkeypatch):
    """Defect 8: SimpleCompareFunc is absent from Polygraphy 0.49/0.50; the profile falls back to CompareFunc.simple."""
    import warnings

    import numpy as np
    from polygraphy.comparator import CompareFunc, IterationResult

    from cosinegate.parity import FP32, compare

    monkeypatch.setattr(compare, "_simple_compare_class", lambda: None)
    used = []
    monkeypatch.setattr(CompareFunc, "simple", lambda simple=CompareFunc.simple, **kw: used.append(kw) or simple(**kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 0.53 deprecates the 0.49 spelling
        func = FP32.compare_func()
    assert used == [{"atol": {"logits": 1e-4, "gates": 0.0}, "rtol": {"logits": 1e-3, "gates": 0.0}}]
    ref = IterationResult({"logits": np.zeros((1, 4), np.float32), "gates": np.ones((1, 9), np.float32)}, runner_name="a")
    near = IterationResult({"logits": np.full((1, 4), 5e-5, np.float32), "gates": np.ones((1, 9), np.float32)}, runner_name="b")
    far = IterationResult({"logits": np.full((1, 4), 1e-2, np.float32), "gates": np.ones((1, 9), np.float32)}, runner_name="c")
    assert all(bool(v) for v in func(ref, near).values())
    assert not bool(func(ref, far)["logits"])


def test_setup_cfg_device_extra_and_python_floor():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["options"]["python_requires"].strip() == ">=3.8"
    device = [line for line in config["options.extras_require"]["device"].splitlines() if line.strip()]
    assert {d.split(";")[0].split(">=")[0].strip() for d in device} == {"numpy", "onnx", "polygraphy", "tomli"}  # no torch, no onnxruntime
    assert any(d.startswith("vermin") for d in config["options.extras_require"]["dev"].split())
