"""The one build decision (cosinegate.trt.precision): the Python build path and the bundle's trtexec lines agree on it
for every target, release, precision, INT8 path, DLA core and calibrator, refusals included."""

import itertools

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.trt.build import build_settings
from cosinegate.trt.targets import DEFAULT_TARGETS_DIR, load_target
from cosinegate.trt.trtexec import trtexec_command
from cosinegate.trtversion import calibration_cache_header

TARGETS = sorted(p.stem for p in DEFAULT_TARGETS_DIR.glob("*.toml") if p.stem != "cpu-onnxruntime")  # TensorRT's
PINS = ("block0/gate/fc",)


def outcome(call):
    try:
        return call()
    except CosineGateError as exc:
        return exc


@pytest.mark.parametrize("target", TARGETS)
def test_build_settings_and_trtexec_lines_make_the_same_decision(target, tmp_path):
    profile = load_target(target)
    # an exact release for each of the profile's (a prefix such as "10" stands for any 10.x): caches name exact ones
    releases = [".".join(map(str, (r.version.parts + (1, 1))[:3])) for r in profile.tensorrt]
    assert all(profile.release_for(v) is not None for v in releases)
    cores = [None] + list(range(profile.dla_cores))[:1]
    seen = {"built": 0, "refused": 0}
    for version, precision, int8_path, core, method in itertools.product(
            releases, ("fp32", "fp16", "int8"), ("qdq", "cache"), cores, ("entropy2", "minmax")):
        if precision != "int8" and (int8_path, method) != ("qdq", "entropy2"):
            continue
        cache = tmp_path / f"{version}-{method}.cache"
        cache.write_text(calibration_cache_header(version, method) + "\n")
        calibrator = method if precision == "int8" and int8_path == "cache" else None
        settings = outcome(lambda: build_settings(profile, str(version), precision, int8_path, cache, core, fp32_layers=PINS))
        line = outcome(lambda: trtexec_command(profile, "m.onnx", "m.engine", precision, int8_path, cache, core,
                                               trt_version=str(version), fp32_layers=PINS, calibrator=calibrator))
        case = (str(version), precision, int8_path, core, method)
        if isinstance(settings, CosineGateError) or isinstance(line, CosineGateError):
            assert str(settings) == str(line), case
            seen["refused"] += 1
            continue
        seen["built"] += 1
        flags = {arg.split("=")[0] for arg in line}
        assert ("--stronglyTyped" in flags) == settings.strongly_typed, case
        assert ("--fp16" in flags) == settings.fp16 and ("--int8" in flags) == settings.int8, case
        assert ("--calib" in flags) == (settings.calib_cache is not None), case
        assert ("--useDLACore" in flags) == (settings.dla_core is not None), case
        assert ("--allowGPUFallback" in flags) == settings.gpu_fallback, case
        assert ("--layerPrecisions" in flags) == bool(settings.fp32_layers), case
    assert seen["built"] and (seen["refused"] or not profile.dla_cores), seen


def test_a_release_without_dla_is_said_before_what_it_lacks_besides():
    """TensorRT 11 with a DLA core: "no DLA support" first (its fp16 refusal would send the user to an fp32 build that
    DLA refuses too)."""
    with pytest.raises(CosineGateError, match="TensorRT 11.0 has no DLA support on this target; drop --dla-core"):
        build_settings(load_target("jetson-orin"), "11.0", "fp16", dla_core=0)
