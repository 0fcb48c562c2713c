"""trtexec command lines for every target x precision, and their version-dependent flags."""

import pytest
from trtexec_rules import problems

from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import list_targets, load_target
from cosinegate.trt.trtexec import trtexec_command

GATES = ["/gate1/fc/Gemm", "/gate2/*"]
BUILDS = ["fp32", "fp16", "int8-qdq", "int8-cache"]


def _build(profile, build, version, **kwargs):
    precision, _, int8_path = build.partition("-")
    return trtexec_command(
        profile, "model.onnx", "model.engine", precision, int8_path or None,
        calib_cache="calib.cache", trt_version=version, fp32_layers=GATES, **kwargs,
    )


def _cases():
    for name in list_targets():
        for release in load_target(name).tensorrt:
            for build in BUILDS:
                yield name, str(release.version), build


@pytest.mark.parametrize("name, version, build", list(_cases()))
def test_every_target_release_and_precision(name, version, build):
    profile = load_target(name)
    release = profile.release_for(version).version
    strong = release.supports_strongly_typed
    if release.requires_strongly_typed:  # TensorRT 11: strongly typed only
        if build in ("fp16", "int8-cache"):
            with pytest.raises(CosineGateError, match="strongly typed only|removed calibration caches"):
                _build(profile, build, version)
            return
        args = _build(profile, build, version)
        assert "--noTF32" in args
        assert "--stronglyTyped" in args and not {"--fp16", "--int8"} & set(args)
        assert not any(a.startswith(("--layerPrecisions", "--precisionConstraints", "--calib")) for a in args)
        return
    args = _build(profile, build, version)
    assert args[:3] == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine"]
    assert "--noTF32" in args  # fp32 means FP32, and so do the gate pins (trtexec enables TF32 by default)
    assert f"--memPoolSize=workspace:{profile.default_workspace_mib}" in args
    assert not any(a.startswith("--useDLACore") for a in args)
    pins = "--layerPrecisions=/gate1/fc/Gemm:fp32,/gate2/*:fp32"
    if build == "fp32":
        assert not {"--fp16", "--int8", "--stronglyTyped"} & set(args)
        assert pins not in args
    elif build == "fp16":
        assert "--fp16" in args and "--int8" not in args
        assert "--precisionConstraints=obey" in args and pins in args
        assert "--layerOutputTypes=/gate1/fc/Gemm:fp32,/gate2/*:fp32" in args
    elif build == "int8-qdq":
        if strong:
            assert "--stronglyTyped" in args
            assert not {"--fp16", "--int8"} & set(args)
            assert not any(a.startswith("--precisionConstraints") for a in args)
        else:
            assert "--stronglyTyped" not in args
            assert "--int8" in args and "--fp16" in args and pins in args
        assert not any(a.startswith("--calib") for a in args)
    else:
        assert "--int8" in args and "--fp16" in args and "--calib=calib.cache" in args
        assert "--stronglyTyped" not in args and pins in args


def test_tensorrt_8_5_qdq_has_no_strongly_typed_flag():
    args = _build(load_target("jetson-xavier-nx"), "int8-qdq", "8.5.2")
    assert "--stronglyTyped" not in args
    assert args[3:5] == ["--int8", "--fp16"]


def test_default_version_is_the_targets_newest():
    args = trtexec_command(load_target("jetson-orin"), "m.onnx", "m.engine", "int8", "qdq")
    assert "--stronglyTyped" in args


def test_default_int8_path_comes_from_the_profile():
    args = trtexec_command(load_target("jetson-orin"), "m.onnx", "m.engine", "int8", trt_version="8.6.2")
    assert "--int8" in args and not any(a.startswith("--calib") for a in args)


def test_dla_flags_and_checks():
    orin, nano = load_target("jetson-orin"), load_target("jetson-orin-nano")
    args = trtexec_command(orin, "m.onnx", "m.engine", "fp16", dla_core=1, trt_version="8.5.2")
    assert args[-4:-2] == ["--useDLACore=1", "--allowGPUFallback"]
    with pytest.raises(CosineGateError, match="no DLA"):
        trtexec_command(nano, "m.onnx", "m.engine", "fp16", dla_core=0)
    with pytest.raises(CosineGateError, match="use a core from 0 to 1"):
        trtexec_command(orin, "m.onnx", "m.engine", "fp16", dla_core=2)
    with pytest.raises(CosineGateError, match="DLA runs fp16 or int8 only"):
        trtexec_command(orin, "m.onnx", "m.engine", "fp32", dla_core=0)


def test_workspace_timing_cache_no_shapes_and_skip_inference():
    """No shape flags: the toolkit's graphs have static shapes, which trtexec refuses shape flags for (rules)."""
    profile = load_target("jetson-orin-nano")
    args = trtexec_command(
        profile, "m.onnx", "m.engine", "fp16", workspace_mib=512, timing_cache="t.cache",
        trt_version="10.3.0", skip_inference=True,
    )
    assert "--memPoolSize=workspace:512" in args
    assert "--timingCacheFile=t.cache" in args
    assert not [a for a in args if "Shapes=" in a or a.startswith("--shapes")]
    assert problems(args, "10.3.0") == []
    assert problems(args + ["--optShapes=input:4x3x32x32"], "10.3.0") == ["shape flags for a static-shape graph"]
    assert args[-1] == "--skipInference"
    old = trtexec_command(profile, "m.onnx", "m.engine", "fp16", trt_version="8.5.2", skip_inference=True)
    assert old[-1] == "--buildOnly"


def test_bad_values():
    profile = load_target("desktop")
    with pytest.raises(CosineGateError, match="workspace"):
        trtexec_command(profile, "m.onnx", "m.engine", "fp16", workspace_mib=-1, trt_version="10.15")


def test_wrong_precision_path_version_and_missing_cache():
    profile = load_target("jetson-orin")
    with pytest.raises(CosineGateError, match="precision 'bf16'"):
        trtexec_command(profile, "m.onnx", "m.engine", "bf16")
    with pytest.raises(CosineGateError, match="INT8 path 'ptq'"):
        trtexec_command(profile, "m.onnx", "m.engine", "int8", "ptq")
    with pytest.raises(CosineGateError, match="not a release of target jetson-orin"):
        trtexec_command(profile, "m.onnx", "m.engine", "fp16", trt_version="9.2")
    with pytest.raises(CosineGateError, match="needs a calibration cache"):
        trtexec_command(profile, "m.onnx", "m.engine", "int8", "cache", trt_version="8.5.2")


def test_tensorrt_11_is_strongly_typed_only():
    future = load_target("desktop")
    assert str(future.newest_tensorrt) == "11"
    assert _build(future, "fp32", "11.0")[3:4] == ["--stronglyTyped"]
    qdq = _build(future, "int8-qdq", "11.0")
    assert "--stronglyTyped" in qdq and not {"--int8", "--fp16"} & set(qdq)
    assert not any(a.startswith("--layerPrecisions") for a in qdq)
    with pytest.raises(CosineGateError, match="removed calibration caches"):
        _build(future, "int8-cache", "11.0")
    with pytest.raises(CosineGateError, match="strongly typed only"):
        _build(future, "fp16", "11.0")


@pytest.mark.parametrize("layer", ["a:b", "a,b", "", "gate/logit\n; touch /tmp/x", "a\tb", "it's"])
def test_layer_names_that_trtexec_cannot_take(layer):
    with pytest.raises(CosineGateError, match="is empty|cannot carry"):
        trtexec_command(load_target("desktop"), "m.onnx", "m.engine", "fp16", fp32_layers=[layer], trt_version="10.15")
