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
from test_bundle import bundle_copy, bundled, flat_twin  # noqa: F401 (fixtures)

WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_code(code, *args, env=None):
    """Run ``code`` (torch blocked first) in a fresh interpreter from the repository root."""
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH + code, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env=env)


BUNDLE_BUILD = """
import importlib.util, json
import cosinegate.cli.build_engine as script
import cosinegate.pipeline.engine as engine
import cosinegate.trt.build as trt_build
from cosinegate.trt.targets import HostInfo
from cosinegate.trtversion import parse_version
trt_build.detect_host = lambda: HostInfo('aarch64', '8.7', parse_version('8.5.2.2'))

def fake_build(onnx_path, engine_path, settings):  # Polygraphy + TensorRT's part: not here
    open(str(engine_path), 'wb').write(b'not an engine')
    return 0.25

trt_build.build_engine = fake_build
engine.engine_parity = lambda engine, inputs, reference, precision, dla_core=None: {'passed': True, 'stand_in': True}
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


RUN_SCRIPT = "import runpy\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"


def test_check_parity_refuses_a_loosened_profile_in_one_line(tmp_path):
    """The board's verdict: a parity_profile.json looser than its precision's own made any engine pass (exit 0)."""
    from test_device_check import FP16, save_outputs

    outputs = save_outputs(tmp_path / "outputs.json")
    profile = tmp_path / "parity_profile.json"
    profile.write_text(json.dumps(dict(FP16, logits_atol=None, min_top1_agreement=-1e999, min_gate_agreement=-1e999)))
    done = run_code(RUN_SCRIPT, ROOT / "cosinegate/parity/device_check.py", outputs, "--reference", outputs, "--profile", profile)
    assert done.returncode == 2 and done.stderr.startswith(f"error: parity profile {profile} has min_top1_agreement -inf")
    assert len(done.stderr.splitlines()) == 1 and not done.stdout, done.stderr


def nptype_of_trt_8_5_2(trt):
    """TensorRT 8.5.2's ``nptype`` (NVIDIA/TensorRT python/packaging/tensorrt/__init__.py at tag 8.5.2, l.151-171) as it
    runs under numpy 1.24.x, the newest numpy for Python 3.8: ``np.bool`` is gone there (numpy 1.24.0 release notes,
    "expired deprecations"; numpy 2.0 brought the name back, so this venv's numpy cannot show it)."""
    import types

    import numpy

    np = types.SimpleNamespace(**{name: getattr(numpy, name) for name in ("float32", "float16", "int8", "int32", "uint8")})

    def nptype(trt_type):
        mapping = {trt.float32: np.float32, trt.float16: np.float16, trt.int8: np.int8, trt.int32: np.int32,
                   trt.bool: np.bool, trt.uint8: np.uint8}  # np.bool: removed in numpy 1.24
        if trt_type in mapping:
            return mapping[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    return nptype


def test_bench_engine_buffers_do_not_need_trt_nptype(monkeypatch):
    """Defect 3: bench.py --engine called trt.nptype, which on 8.5.2 fails under numpy >= 1.24 (np.bool)."""
    import numpy as np
    from trt_recorder import fake_engine_modules

    from cosinegate.runtime.tensorrt_backend import TensorRTRunner

    shapes = {"input": (1, 3, 32, 32), "logits": (1, 10), "gates": (1, 9)}
    trt, _ = fake_engine_modules(monkeypatch, "8.5.2", set(), shapes)
    trt._values.update(nptype=nptype_of_trt_8_5_2(trt))
    with TensorRTRunner(b"") as runner:
        assert {name: buf.dtype for name, buf in runner.host.items()} == dict.fromkeys(shapes, np.dtype(np.float32))


def _allowed_numpy(requirements, python_version):
    from packaging.requirements import Requirement

    specs = [Requirement(line) for line in requirements.split("\n") if line.strip() and not line.strip().startswith("#")]
    return [r.specifier for r in specs if r.name == "numpy" and (r.marker is None or r.marker.evaluate({"python_version": python_version}))]


def test_python_38_installs_resolve_a_numpy_with_np_bool():
    """Defect 3: on Python 3.8 (JetPack 5.1) `numpy>=1.23` resolves to 1.24.4, which lacks np.bool; the pins keep < 1.24."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for requirements in (config["options"]["install_requires"], config["options.extras_require"]["device"]):
        on_38 = _allowed_numpy(requirements, "3.8")
        assert on_38 and not any("1.24.4" in spec for spec in on_38), requirements
        assert any("1.23.5" in spec for spec in on_38) or any("1.22.4" in spec for spec in on_38)
    assert all("2.2.0" in spec for spec in _allowed_numpy(config["options"]["install_requires"], "3.10"))  # desktops


def test_board_installs_keep_numpy_1_below_python_3_13():
    """JetPack's OpenCV and TensorRT bindings are built against numpy 1.x: the device extra must not move a board to
    numpy 2 (onnx 1.23's ml_dtypes asks for numpy >= 2 on Python 3.10; the JetPack rehearsal imports cv2 after it)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    device = config["options.extras_require"]["device"]
    for python in ("3.8", "3.10", "3.12"):
        allowed = _allowed_numpy(device, python)
        assert allowed and not any("2.0.0" in spec for spec in allowed) and all("1.23.5" in spec for spec in allowed), python
    on_313 = _allowed_numpy(device, "3.13")
    assert on_313 and all("2.2.0" in spec for spec in on_313), "Python 3.13 has no numpy 1.x wheels"


def _readme_commands(readme):
    """The shell commands of a bundle README: its ```sh block lines and its `inline code` spans that start a command."""
    import re

    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).splitlines()
    inline = [c for c in re.findall(r"`([^`]+)`", readme) if c.split()[0] in ("python3", "pip3", "sh", "tar", "export")]
    return block + inline


def test_bundle_readme_names_the_real_bundle_folder(bundle_copy):  # noqa: F811
    """Defect 5: the README said MODEL-bundle/, the folder is MODEL-FORM-PRECISION-bundle/."""
    readme = (bundle_copy / "README.md").read_text()
    folders = {word.split("/")[0] for command in _readme_commands(readme) for word in command.split() if "-bundle" in word}
    assert folders == {bundle_copy.name, f"{bundle_copy.name}.tar.gz"}, folders


def test_bundle_readme_commands_run_where_the_archive_unpacks(bundle_copy):  # noqa: F811
    """Review: the parity block said `cd BUNDLE` and the next block ran `python3 BUNDLE/run_engine.py` from the
    parent folder; followed in order, it failed. A command that needs the bundle as its folder changes there in a
    subshell."""
    import re

    readme = (bundle_copy / "README.md").read_text()
    lines = [line.strip() for block in re.findall(r"```sh\n(.*?)```", readme, re.S) for line in block.splitlines()]
    assert not [line for line in lines if line.startswith("cd ")], lines
    assert f"(cd {bundle_copy.name} && polygraphy run results/<engine>.engine" in readme


def test_bundle_readme_install_works_with_ubuntu_20_04s_pip(bundle_copy):  # noqa: F811
    """Defect 4: pip 20.0.2 (Ubuntu 20.04, JetPack 5.1) installs a project in editable mode only through its setup.py
    (pip 21.3 added PEP 660); tests/jetpack_rehearsal.py runs the README's line with pip 20.0.2 itself."""
    readme = (bundle_copy / "README.md").read_text()
    installs = [c for c in _readme_commands(readme) if " install " in c and ".[device]" in c]
    assert installs, readme
    if any(" -e " in c for c in installs):
        setup_py = ROOT / "setup.py"
        assert setup_py.is_file() and "setup()" in setup_py.read_text()


def test_polygraphy_in_user_scripts_is_found_before_the_next_login(bundle_copy, tmp_path):  # noqa: F811
    """`pip3 install --user polygraphy` puts the command in ~/.local/bin, on PATH only after a new login."""
    from test_bundle import FAKE_POLYGRAPHY, run_device_script

    readme = (bundle_copy / "README.md").read_text()
    assert 'export PATH="$HOME/.local/bin:$PATH"' in readme
    user_bin = tmp_path / ".local" / "bin"  # run_device_script's HOME is tmp_path
    user_bin.mkdir(parents=True)
    (user_bin / "polygraphy").write_text(FAKE_POLYGRAPHY)
    (user_bin / "polygraphy").chmod(0o755)
    done = run_device_script(bundle_copy, tmp_path, tools=("trtexec", "nvpmodel", "jetson_clocks"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "trtexec.log.polygraphy").read_text().startswith("run "), done.stdout


DEVICE_ONLY = WITHOUT_TORCH + "sys.modules['tqdm'] = None; sys.modules['onnx_graphsurgeon'] = None  # not in the device extra\n"

IF_COST_TRT = """
import importlib.util, json
import cosinegate.cli.bench as script
import cosinegate.trt.timing as timing
from cosinegate.bench.backends import OnnxrtGraph

class StandIn(OnnxrtGraph):  # TensorRT's part: not here; ONNX Runtime times the same graphs
    def __init__(self, model, precision='fp16'):
        super().__init__(model)

timing.TrtGraph = StandIn
from cosinegate.cli import run_main
try:
    run_main(lambda: script.main(sys.argv[1:]))
finally:
    print('blocked:', [m for m in ('torch', 'tqdm', 'onnx_graphsurgeon') if sys.modules[m] is not None])
"""


def test_if_cost_on_the_board_needs_neither_tqdm_nor_torch(flat_twin, tmp_path):  # noqa: F811
    """Defect 7: bench.py --if-cost --backend trt imported tqdm (training extra), then torch via cosinegate.onnx."""
    table = tmp_path / "if-cost.json"
    done = subprocess.run([sys.executable, "-c", DEVICE_ONLY + IF_COST_TRT, "--if-cost", "--backend", "trt", "--onnx",
                           flat_twin, "--warmup", "1", "--iterations", "3", "--rounds", "1",
                           "--json", table], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "blocked: []" in done.stdout
    result = json.loads(table.read_text())
    assert result["backend"] == "trt" and result["blocks"] and result["num_blocks"] == 9


DATA_LOADER = """
import runpy
module = runpy.run_path('calibration/data_loader.py')
feeds = list(module['load_data']())
import numpy as np
print('feeds', len(feeds), feeds[0]['input'].shape, feeds[0]['input'].dtype, float(np.abs(feeds[0]['input']).sum()))
print('blocked:', [m for m in ('torch', 'tqdm', 'onnx_graphsurgeon') if sys.modules[m] is not None])
"""


def test_calibration_data_loader_runs_on_the_device_extra(flat_twin, fake_cifar_root):  # noqa: F811
    """Defect 8: calibration/data_loader.py ("for calibrating on the device") imported torch twice."""
    import os

    env = dict(os.environ, COSINEGATE_CALIB_MODEL=str(flat_twin), COSINEGATE_CALIB_COUNT="20",
               COSINEGATE_CALIB_DATA="cifar10", COSINEGATE_CALIB_DATA_ROOT=str(fake_cifar_root))
    done = subprocess.run([sys.executable, "-c", DEVICE_ONLY + DATA_LOADER], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "feeds 20 (1, 3, 32, 32) float32" in done.stdout and "blocked: []" in done.stdout


def test_calibration_batches_match_training_normalization_exactly():
    """The numpy batches the device calibrates on are bit-identical to the torch preprocessing of training."""
    import numpy as np

    from cosinegate.data.augment import to_tensor
    from cosinegate.quant.calibset import batches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    norm = {"mean": [0.41, 0.52, 0.33], "std": [0.21, 0.19, 0.27]}
    ours = np.concatenate(list(batches(images, 2, norm)))
    torch_made = to_tensor(images, "cpu", norm).numpy()
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and np.array_equal(ours, torch_made)


HOST = """
import json
sys.modules['pycuda'] = None  # no pycuda on this board
from cosinegate.trt import build
host = build.detect_host(environ=json.loads(sys.argv[1]), device_tree=sys.argv[2], nvidia_smi=None)
print('capability:', host.compute_capability)
from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import host_matches, load_target
from dataclasses import replace
print('matches:', host_matches(load_target('jetson-orin'), replace(host, arch='aarch64')))
"""


@pytest.mark.parametrize("compatible, environ, expected", [
    (b"nvidia,p3737-0000+p3701-0000\x00nvidia,tegra234\x00", {}, "8.7"),  # Jetson AGX Orin devkit
    (b"nvidia,p2972-0000\x00nvidia,tegra194\x00", {}, "7.2"),  # Jetson AGX Xavier devkit
    (None, {"CC": "8.7"}, "8.7"),  # as build_on_device.sh takes it
    (None, {}, None),
    (None, {"CC": "gcc"}, None),  # the C compiler's variable
])
def test_the_board_reads_its_compute_capability_without_pycuda(tmp_path, compatible, environ, expected):
    """Defect 11: without pycuda (and torch) the board said "compute capability None"."""
    tree = tmp_path / "compatible"
    if compatible is not None:
        tree.write_bytes(compatible)
    done = run_code(HOST, json.dumps(environ), tree)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"capability: {expected}" in done.stdout
    if expected is None:
        assert "None" not in done.stdout.split("matches:")[1] and "CC=" in done.stdout


def test_an_unknown_compute_capability_is_named_as_such_in_the_engine_check(tmp_path):
    from cosinegate.errors import CosineGateError
    from cosinegate.manifests import EngineManifest
    from cosinegate.trt.manifest import check_engine_manifest, write_engine_manifest

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"engine")
    write_engine_manifest(engine, EngineManifest(trt_version="8.5.2.2", compute_capability="8.7"))
    with pytest.raises(CosineGateError) as info:
        check_engine_manifest(engine, "8.5.2.2", None)
    assert "None" not in str(info.value) and "CC=" in str(info.value) and "pycuda" in str(info.value)


def test_cifar10_batches_load_under_numpy_1(fake_cifar_root, monkeypatch):
    """Found by the JetPack 5.1 rehearsal: the CIFAR-10 unpickler imported numpy._core, which numpy 1.x (the board's
    1.23.5) lacks, so calibration/data_loader.py and any CIFAR-10 run on JetPack 5.1 failed."""
    from cosinegate.data.cifar10 import load_cifar10

    monkeypatch.setitem(sys.modules, "numpy._core.multiarray", None)  # `import numpy._core.multiarray` fails, as on numpy 1
    train, test = load_cifar10(fake_cifar_root, allow_download=False)
    assert len(train) and len(test) and train.images.dtype.name == "uint8"


def test_native_size_cifar10_needs_no_pillow(fake_cifar_root, monkeypatch):
    """Found by the JetPack rehearsal: CIFAR-10 at its native size imported Pillow (not in the device extra) first."""
    from cosinegate.data.cifar10 import load_cifar10

    monkeypatch.setitem(sys.modules, "PIL", None)
    train, _ = load_cifar10(fake_cifar_root, allow_download=False)
    assert train.images.shape[1:] == (32, 32, 3)


@pytest.mark.parametrize("target, form, int8_path, builds_on", [
    ("jetson-agx-xavier", "conditional", "qdq", None),  # 8.5 only: DLA takes a cache, which an If graph cannot use
    ("jetson-agx-xavier", "conditional", "cache", None),
    ("jetson-agx-xavier", "masked", "qdq", ["8.5.2"]),  # built from the masked graph's cache on 8.5
    ("jetson-orin", "conditional", "qdq", ["10.3.0"]),  # weakly typed Q/DQ on 10.x
])
def test_dla_int8_requests_no_release_of_the_target_can_build_are_refused(target, form, int8_path, builds_on):
    """Defect 10: --int8 qdq --dla-core N (conditional) for the AGX Xavier wrote a bundle whose script exits 2 on every
    release the target has."""
    from cosinegate.errors import CosineGateError
    from cosinegate.trt.build import dla_releases_that_build
    from cosinegate.trt.targets import load_target

    profile = load_target(target)
    if builds_on is None:
        with pytest.raises(CosineGateError, match=rf"^no TensorRT release of {target} .*DLA.*; ") as info:
            dla_releases_that_build(profile, form, "int8", int8_path, 0)
        assert "\n" not in str(info.value)
    else:
        assert dla_releases_that_build(profile, form, "int8", int8_path, 0) == builds_on


def test_the_xavier_dla_conditional_qdq_bundle_is_refused_before_anything_is_written(tmp_path):
    from scripts_in_process import run

    (tmp_path / "model.onnx").write_bytes(b"not read: the target is refused first")
    code, out, err = run("deploy/build_engine.py", "--target", "jetson-agx-xavier", "--onnx", tmp_path / "model.onnx",
                         "--int8", "qdq", "--dla-core", "0", "--out", tmp_path / "out")
    assert code == 2 and "no TensorRT release of jetson-agx-xavier" in err and not (tmp_path / "out").exists(), err


@pytest.mark.parametrize("form, int8_path, records_cache", [("conditional", "qdq", False), ("masked", "cache", True)])
def test_engine_manifest_records_the_calibration_cache_only_when_the_build_reads_it(bundle_copy, flat_twin, tmp_path, monkeypatch,
                                                                                    form, int8_path, records_cache):  # noqa: F811
    """Also noticed in issue 22: Q/DQ builds recorded the calibration_sha256 of a cache they never read."""
    from cosinegate.artifacts import sha256_file
    from cosinegate.pipeline.engine import build_one
    from cosinegate.pipeline.plan import Artifacts, DeploySettings, Target
    from cosinegate.trt import build as trt_build
    from cosinegate.trt.targets import HostInfo, load_target
    from cosinegate.trtversion import calibration_cache_header, parse_version

    cache = tmp_path / "calibration.cache"
    cache.write_text(calibration_cache_header("10.3.0", "entropy2") + "\ninput: 3c010204\n")
    monkeypatch.setattr(trt_build, "build_engine", lambda onnx, engine, settings: open(str(engine), "wb").close() or 0.1)
    settings = DeploySettings("jetson-orin", precision="int8", int8_path=int8_path, form=form)
    graph = bundle_copy / "model.conditional.onnx" if form == "conditional" else flat_twin
    host = HostInfo("aarch64", "8.7", parse_version("10.3.0.30"))
    target = Target(load_target("jetson-orin"), host, True, "", tmp_path / "out")
    engine, _ = build_one(settings, target, Artifacts("tiny", graph, cache=cache), form)
    manifest = json.loads((tmp_path / "out" / f"{engine.name}.json").read_text())
    assert manifest["calibration_sha256"] == (sha256_file(cache) if records_cache else None)
    assert manifest["power_rails"] == {"total": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"],  # bench --power reads them
                                       "detail": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]}  # jetson-orin.toml


def test_a_dla_build_does_not_overwrite_the_gpu_engine(bundle_copy, flat_twin, tmp_path, monkeypatch):  # noqa: F811
    """Board walkthrough: build_engine.py --bundle --dla-core 0 wrote the GPU engine's file name in engines/<target>/."""
    from cosinegate.pipeline.engine import build_one
    from cosinegate.pipeline.plan import Artifacts, DeploySettings, Target
    from cosinegate.trt import build as trt_build
    from cosinegate.trt.targets import HostInfo, load_target
    from cosinegate.trtversion import parse_version

    monkeypatch.setattr(trt_build, "build_engine", lambda onnx, engine, settings: open(str(engine), "wb").close() or 0.1)
    host = HostInfo("aarch64", "8.7", parse_version("10.3.0.30"))
    target = Target(load_target("jetson-orin"), host, True, "", tmp_path / "out")
    built = [build_one(DeploySettings("jetson-orin", precision="fp16", form="masked", dla_core=core), target,
                       Artifacts("tiny", flat_twin), "masked")[0].name for core in (None, 0)]
    assert built == ["tiny-masked-fp16-trt10.3.0.30-sm87.engine", "tiny-masked-fp16-dla0-trt10.3.0.30-sm87.engine"]
    assert json.loads((tmp_path / "out" / f"{built[1]}.json").read_text())["settings"]["dla_core"] == 0


LAYERS_FP16_GATE = {"Layers": [
    {"Name": "block0/gate/fc/matmul + block0/gate/fc", "LayerType": "Gemm",
     "Inputs": [{"Name": "block0/gate/flatten", "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "block0/gate/fc", "Format/Datatype": "Row major linear FP16 format"}]},
    {"Name": "block0/gate/decision", "LayerType": "ElementWise",
     "Inputs": [{"Name": "block0/gate/logit", "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "block0/gate/decision", "Format/Datatype": "Row major linear Bool"}]},
    {"Name": "block0/conv1", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "stem/out", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Outputs": [{"Name": "block0/conv1", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
]}


def test_the_board_script_names_gate_layers_the_engine_runs_below_fp32(bundle_copy, tmp_path):  # noqa: F811
    """Deliverable 5 of issue 22: the pins are checked against the built engine's --exportLayerInfo on the board."""
    from test_bundle import FAKE_TRTEXEC, run_device_script

    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps(LAYERS_FP16_GATE))
    fake = FAKE_TRTEXEC.replace('''    --export*=*) printf '[]' > "${arg#*=}" ;;''',
                                f'''    --exportLayerInfo=*) cp {layers} "${{arg#*=}}" ;;\n    --export*=*) printf '[]' > "${{arg#*=}}" ;;''')
    done = run_device_script(bundle_copy, tmp_path, fakes={"trtexec": fake})
    assert done.returncode == 0, done.stderr
    report = (bundle_copy / "results" / "gate_precision.txt").read_text()
    assert "block0/gate/fc/matmul + block0/gate/fc" in report and "FP16" in report
    assert "block0/gate/decision" not in report and "block0/conv1" not in report
    assert "gate layer(s) below FP32" in done.stdout + done.stderr


FAKE_TRTEXEC_BY_PATTERN = """#!/bin/sh
# median latency 1 + k ms for timing/pattern-k.bin, 0.5 ms otherwise
M=0.5
for arg in "$@"; do
  case "$arg" in
    --saveEngine=*) printf 'not an engine' > "${arg#--saveEngine=}" ;;
    --export*=*) printf '[]' > "${arg#*=}" ;;
    --loadInputs=*pattern-*) n=${arg##*pattern-}; M=$(expr "${n%.bin}" + 1) ;;
  esac
done
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec $*"
echo "[I] Latency: min = 0.1 ms, max = 9 ms, mean = $M ms, median = $M ms, percentile(90%) = $M ms"
echo "$*" >> "$FAKE_LOG"
"""


@pytest.fixture(scope="module")
def dynamic_bundle(dyn_checkpoint, tmp_path_factory):
    """A conditional fp16 bundle (--select fastest) of the checkpoint whose gates split the test images."""
    import contextlib
    import io
    import shutil

    from scripts_in_process import script

    from cosinegate.trt import build as trt_build
    from cosinegate.trt.targets import HostInfo

    out = tmp_path_factory.mktemp("dynamic-bundle")
    shutil.copy(dyn_checkpoint, out / "dyn.pt")
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
        assert script("deploy/build_engine.py").main(["--target", "jetson-orin", "--checkpoint", str(out / "dyn.pt"),
                                                      "--out", str(out)]) == 0
    return out / "dyn-conditional-fp16-bundle"


def test_the_conditional_engine_is_timed_over_every_gate_pattern_of_the_timing_images(dynamic_bundle, tmp_path):
    """Defect 6: trtexec --loadInputs times one buffer, so the conditional engine's latency (and the board's winner)
    came from one image's gate pattern; now one run per pattern of the timing images, weighted by its images."""
    import shutil

    from test_bundle import run_device_script

    bundle_copy = tmp_path / dynamic_bundle.name
    shutil.copytree(dynamic_bundle, bundle_copy)
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    rows = [line.split() for line in (bundle_copy / "timing" / "patterns.txt").read_text().splitlines()]
    assert "selection's" in manifest["timing"]["images"] and manifest["timing"]["patterns"] == len(rows)
    counts = {int(n): pattern for _, n, pattern in rows}
    assert len({pattern for _, _, pattern in rows}) == len(rows) > 1 and all(set(p) <= {"0", "1"} for p in counts.values())
    images = sum(int(n) for _, n, _ in rows)
    assert str(images) in manifest["timing"]["images"]
    for rel, _, _ in rows:
        assert rel in manifest["files"]
    done = run_device_script(bundle_copy, tmp_path, fakes={"trtexec": FAKE_TRTEXEC_BY_PATTERN})
    assert done.returncode == 0, done.stderr
    expected = sum(int(n) * (1 + k) for k, (_, n, _) in enumerate(rows)) / images
    latency = (bundle_copy / "results" / "latency.txt").read_text()
    assert f"{expected:.4f} ms over {images} of {images} timing images" in latency, latency
    table = (bundle_copy / "results" / "candidates.txt").read_text().splitlines()
    assert table[1].split()[:2] == ["conditional", f"{expected:.4f}"], table
    assert "0.5" in table[2] and "0.5" in table[3]  # pruned and dense: the same work for every image, input.bin


@pytest.mark.parametrize("script", ["cosinegate/parity/device_check.py", "cosinegate/trt/run_engine.py"])
def test_every_flag_of_the_scripts_that_travel_has_help(script):
    """Board walkthrough: check_parity.py --help showed `--profile PROFILE` with no word on what it is; the board has
    no docs but the bundle README and --help."""
    done = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    options = done.stdout.split("ptions:\n", 1)[1]  # "options:" (3.10+) or "optional arguments:"
    # a flag line without its help on it is followed by an indented help line, else it has none
    lines = options.splitlines()
    missing = [lines[i].strip() for i, line in enumerate(lines) if line.startswith("  -")
               and len(line.split("  ", 2)) < 3 and (i + 1 == len(lines) or not lines[i + 1].startswith(" " * 8))]
    assert not missing, missing
