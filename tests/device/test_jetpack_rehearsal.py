"""JetPack rehearsal: the board side of a bundle run here as on JetPack 5.1, 6.0 and 6.1 (tests/jetpack_rehearsal.py).

Per JetPack, in a venv of its Python (pyenv 3.8 / 3.10) where its Ubuntu's pip ran the bundle README's
``pip3 install -e '.[device]'`` (no torch anywhere), beside its OpenCV version (no Pillow), with the release's real
``tensorrt/__init__.py`` over stand-in bindings of exactly its API names, fake trtexec/nvpmodel/jetson_clocks/polygraphy
commands, and CC=8.7 on an "aarch64" machine: ``sh build_on_device.sh`` (and its check_parity.py), ``run_engine.py``,
``build_engine.py --bundle``, ``bench.py --engine``, ``bench.py --if-cost --backend trt --onnx`` and
calibration/data_loader.py under Polygraphy's script loader.
The commands that need TensorRT or CUDA must get exactly as far as their first real TensorRT/CUDA call. Beside it,
run_engine.py --onnx under Python 3.8 with numpy and onnxruntime only, as pip resolves them there.

Slow (three venvs, PyPI downloads): deselected by default; CI runs it as its own step (.ci/run):
``python -m pytest -q -m rehearsal tests/device/test_jetpack_rehearsal.py``. Skips with the reason where pyenv's Python or
PyPI is missing. A stand-in TensorRT is never evidence that a build works: that needs the board.
"""

import json
import os
import sys

import pytest

from conftest import ROOT
from jetpack_rehearsal import JETPACKS, MARKER, board_venv, fake_board_packages, python_venv, run, why_not
from test_bundle import FAKE_JETSON_CLOCKS, FAKE_NVPMODEL, FAKE_POLYGRAPHY, FAKE_TRTEXEC, bundle_copy, bundled, flat_twin  # noqa: F401
from test_run_engine import default_bundle, photos, toolkit_rows  # noqa: F401

pytestmark = pytest.mark.rehearsal
DATA_LOADER = (
    "from polygraphy import mod\n"
    "load_data = mod.import_from_script('calibration/data_loader.py', 'load_data')\n"
    "feeds = list(load_data())\n"
    "print('calibration feeds:', len(feeds), feeds[0]['input'].shape, feeds[0]['input'].dtype)\n"
)
BOARD_PYTHON = (
    "import importlib.util, sys, numpy, platform, tensorrt as trt\n"
    "assert importlib.util.find_spec('torch') is None, 'torch is installed'\n"
    "types = [trt.nptype(getattr(trt, n)) for n in ('float32', 'float16', 'int8', 'int32', 'bool')]\n"
    "import cv2  # JetPack's OpenCV, built against numpy 1.x: the numpy the install left must import it\n"
    "print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'tensorrt', trt.__version__, 'opencv',\n"
    "      cv2.__version__, platform.machine())\n"
)


def tools(folder, jetpack):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("trtexec", FAKE_TRTEXEC), ("nvpmodel", FAKE_NVPMODEL), ("jetson_clocks", FAKE_JETSON_CLOCKS),
                       ("polygraphy", FAKE_POLYGRAPHY)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def board_env(venv, packages, bin_dir, tmp_path, jetpack, **extra):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    system = [d for d in ("/usr/bin", "/bin") if os.path.isdir(d)]
    env.update(PATH=os.pathsep.join([str(bin_dir), str(venv / "bin"), *system]), PYTHONPATH=str(packages),
               HOME=str(tmp_path), CC="8.7", FAKE_TRT_NV=jetpack.trtexec_banner, FAKE_LOG=str(tmp_path / "trtexec.log"),
               USER="nvidia", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def stops_at_first_real_call(done, what):
    """The command ran the board side up to the first real TensorRT/CUDA call, and no further."""
    text = done.stdout + done.stderr
    assert MARKER in text, f"{what} did not reach its first real TensorRT/CUDA call:\n{text[-3000:]}"
    assert "ModuleNotFoundError" not in text and "ImportError" not in text, f"{what}:\n{text[-3000:]}"


@pytest.mark.parametrize("name", sorted(JETPACKS))
def test_the_board_side_runs_on_jetpack(name, bundle_copy, flat_twin, fake_cifar_root, tmp_path):  # noqa: F811
    jetpack = JETPACKS[name]
    reason = why_not(jetpack)
    if reason:
        pytest.skip(f"JetPack {name} rehearsal: {reason}")
    venv, install = board_venv(jetpack, ROOT)
    assert install.returncode == 0, (f"the bundle README's `pip3 install -e '.[device]'` fails with pip {jetpack.pip} "
                                     f"on Python {jetpack.python}:\n{install.stderr[-3000:]}")
    packages = fake_board_packages(jetpack, tmp_path / "board-python")
    env = board_env(venv, packages, tools(tmp_path / "bin", jetpack), tmp_path, jetpack)
    python = venv / "bin" / "python"

    done = run([python, "-c", BOARD_PYTHON], cwd=ROOT, env=env)
    assert done.returncode == 0, f"JetPack {name}'s Python, numpy, tensorrt/__init__.py and OpenCV:\n{done.stderr[-3000:]}"
    print(done.stdout.strip())

    done = run(["sh", bundle_copy / "build_on_device.sh"], env=env)
    assert done.returncode == 0, f"build_on_device.sh:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    release = jetpack.trt_version.rsplit(".", 1)[0] if name == "5.1" else ".".join(jetpack.trt_version.split(".")[:3])
    engine = bundle_copy / "results" / f"tiny-conditional-fp16-trt{release}-sm87.engine"
    assert engine.is_file() and (bundle_copy / "results" / f"{engine.name}.json").is_file(), done.stdout[-2000:]
    log = (bundle_copy / "results" / "polygraphy.log").read_text()
    assert "passed" in log.lower() and "Traceback" not in log, log[-2000:]  # check_parity.py on the board's Python

    import numpy as np

    np.save(tmp_path / "images.npy", np.zeros((2, 32, 32, 3), np.uint8))
    done = run([python, bundle_copy / "run_engine.py", tmp_path / "images.npy"], cwd=tmp_path, env=env)
    stops_at_first_real_call(done, "run_engine.py (the engine build_on_device.sh made)")
    from PIL import Image  # this process's Pillow writes the files; the board venv has none: JetPack's OpenCV reads them

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(photos / "native.png")
    Image.new("RGB", (64, 48), (30, 200, 30)).save(photos / "resized.jpg", quality=90)
    done = run([python, bundle_copy / "run_engine.py", photos], cwd=tmp_path, env=env)
    stops_at_first_real_call(done, "run_engine.py on image files (OpenCV)")
    assert "images decoded and resized with OpenCV" in done.stdout, done.stdout[-2000:]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(tmp_path / "whole.jpg")
    whole = (tmp_path / "whole.jpg").read_bytes()  # noise: the cut falls in the scan data, past the headers
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    Image.new("L", (8000, 6300)).save(tmp_path / "huge.png")  # over run_engine's 50 M pixel limit
    for bad, text in (("cut.jpg", "is truncated"), ("huge.png", "over the 50000000 pixel limit")):
        done = run([python, bundle_copy / "run_engine.py", tmp_path / bad], cwd=tmp_path, env=env)
        assert done.returncode == 2 and text in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr[-2000:]

    done = run([python, "deploy/build_engine.py", "--target", "jetson-orin", "--bundle", bundle_copy, "--out",
                tmp_path / "engines"], cwd=ROOT, env=env)
    stops_at_first_real_call(done, "build_engine.py --bundle")

    done = run([python, "deploy/bench.py", "--engine", engine], cwd=ROOT, env=env)
    stops_at_first_real_call(done, "bench.py --engine")

    done = run([python, "deploy/bench.py", "--if-cost", "--backend", "trt", "--onnx", flat_twin,
                "--warmup", "1", "--iterations", "3", "--rounds", "1"], cwd=ROOT, env=env)
    stops_at_first_real_call(done, "bench.py --if-cost --backend trt")

    calib = dict(env, COSINEGATE_CALIB_MODEL=str(flat_twin), COSINEGATE_CALIB_COUNT="20",
                 COSINEGATE_CALIB_DATA="cifar10", COSINEGATE_CALIB_DATA_ROOT=str(fake_cifar_root))
    done = run([python, "-c", DATA_LOADER], cwd=ROOT, env=calib)
    assert done.returncode == 0 and "calibration feeds: 20 (1, 3, 32, 32) float32" in done.stdout, done.stderr[-3000:]


def test_run_engine_onnx_path_on_python_3_8_with_numpy_and_onnxruntime_only(default_bundle, photos, tmp_path):  # noqa: F811
    """run_engine.py --onnx under Python 3.8 (JetPack 5.1's) with numpy and onnxruntime only, as pip resolves them
    there (no Pillow, no OpenCV: the .npy file alone): the toolkit's labels and gates exactly."""
    reason = why_not(JETPACKS["5.1"])
    if reason:
        pytest.skip(f"Python 3.8 run_engine.py --onnx: {reason}")
    venv, install = python_venv("3.8", ["numpy<1.25", "onnxruntime<1.20"], "venv-run-engine")
    assert install.returncode == 0, install.stderr[-2000:]
    python = venv / "bin" / "python"
    probe = run([python, "-c", "import sys, numpy, onnxruntime, importlib.util as u\n"
                             "print(sys.version_info[:2], u.find_spec('PIL') is None and u.find_spec('cv2') is None)"])
    assert probe.stdout.strip() == "(3, 8) True", probe.stdout + probe.stderr
    mine = tmp_path / "py38.json"
    graph = default_bundle / "model.conditional.onnx"
    done = run([python, default_bundle / "run_engine.py", "--onnx", graph, photos / "d.npy", "--json", mine])
    assert done.returncode == 0, done.stderr
    expected = toolkit_rows(default_bundle, photos)
    assert {r["file"]: (r["index"], r["gates"]) for r in json.loads(mine.read_text())["images"]} == {
        k: v for k, v in expected.items() if "d.npy" in k}
    done = run([python, default_bundle / "run_engine.py", "--onnx", graph, photos / "a00.png"])
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "pip3 install pillow" in done.stderr


def test_the_rehearsal_is_deselected_by_default():
    """It is CI's separate step: the default run (`pytest -q`) leaves it out."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert '-m "not rehearsal"' in config["tool:pytest"]["addopts"]
    assert "-m rehearsal" in (ROOT / ".ci" / "run").read_text()
    assert sys.version_info >= (3, 8)
