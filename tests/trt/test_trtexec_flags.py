"""Every trtexec line the toolkit generates (target x release x precision x INT8 path x DLA, build and
timing) uses only flags that release's trtexec has, in combinations it accepts (tests/trtexec_rules.py)."""

import pytest

from trtexec_rules import accepted_flags, problems

from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import list_targets, load_target
from cosinegate.trt.trtexec import trtexec_command, trtexec_timing_command

GATES = ("block0/gate/fc", "block0/gate/logit")
BUILDS = [("fp32", None), ("fp16", None), ("int8", "qdq"), ("int8", "cache")]


def _cases():
    for name in list_targets():
        profile = load_target(name)
        for release in profile.tensorrt:
            for precision, int8_path in BUILDS:
                for dla_core in [None] + list(range(profile.dla_cores)):
                    yield name, str(release.version), precision, int8_path, dla_core


CASES = list(_cases())


def test_the_matrix_is_complete():
    cells = {(c[1], c[2], c[3], c[4] is not None) for c in CASES}
    for release in ("8.5.2", "8.6.2", "10.3.0"):  # every Jetson release with and without DLA, every build
        assert {(release, p, i, dla) for p, i in BUILDS for dla in (False, True)} <= cells
    assert {c[1] for c in CASES} >= {"8.5.2", "8.6.2", "10.3.0", "8.6", "10", "10.15", "11"}


@pytest.mark.parametrize("target, release, precision, int8_path, dla_core", CASES)
def test_build_line_is_accepted_by_that_trtexec(target, release, precision, int8_path, dla_core):
    profile = load_target(target)
    try:
        args = trtexec_command(profile, "model.onnx", "model.engine", precision, int8_path, calib_cache="calibration.cache",
                               dla_core=dla_core, timing_cache="timing.cache", trt_version=release, fp32_layers=GATES,
                               skip_inference=True, verbose=True, detailed_profile=True)
    except CosineGateError as exc:  # refusals are the toolkit's decision, said in one line
        assert "; " in str(exc) or "use" in str(exc)
        return
    assert problems(args, release) == []


@pytest.mark.parametrize("target, release", sorted({(c[0], c[1]) for c in CASES}))
def test_timing_line_is_accepted_by_that_trtexec(target, release):
    profile = load_target(target)
    for dla_core in [None] + list(range(profile.dla_cores))[:1]:
        args = trtexec_timing_command(profile, "model.engine", release, {"input": "input.bin"}, "results/timing", dla_core)
        assert problems(args, release) == []


def test_refusals_are_the_expected_ones():
    """The only refused cells: fp16/cache on 11 (strongly typed only), DLA+Q/DQ on 8.x (DLA takes no Q/DQ),
    fp32 on DLA (DLA runs fp16/int8)."""
    refused = set()
    for target, release, precision, int8_path, dla_core in CASES:
        try:
            trtexec_command(load_target(target), "m.onnx", "m.engine", precision, int8_path, "c.cache", dla_core,
                            trt_version=release)
        except CosineGateError:
            refused.add((release, precision, int8_path, dla_core is not None))
    assert refused == {("11", "fp16", None, False), ("11", "int8", "cache", False)} | {
        ("8.5.2", "int8", "qdq", True), ("8.6.2", "int8", "qdq", True)} | {
        (release, "fp32", None, True) for release in ("8.5.2", "8.6.2", "10.3.0")}


@pytest.mark.parametrize("args, release, problem", [
    (["trtexec", "--onnx=m", "--stronglyTyped"], "8.6.2", "not a flag of trtexec 8.6.2"),
    (["trtexec", "--onnx=m", "--skipInference"], "8.5.2", "not a flag"),
    (["trtexec", "--onnx=m", "--builderOptimizationLevel=3"], "8.5.2", "not a flag"),
    (["trtexec", "--onnx=m", "--fp16"], "11", "not a flag"),
    (["trtexec", "--onnx=m", "--int8"], "11", "strongly typed only"),
    (["trtexec", "--onnx=m", "--stronglyTyped", "--fp16"], "10.3.0", "precision flag"),
    (["trtexec", "--onnx=m", "--stronglyTyped", "--useDLACore=0"], "10.3.0", "sets FP16 for DLA"),
    (["trtexec", "--onnx=m", "--calib=c"], "10.3.0", "without --int8"),
    (["trtexec", "--onnx=m", "--fp16", "--layerPrecisions=a:fp32"], "10.3.0", "without --precisionConstraints"),
    (["trtexec", "--onnx=m", "--allowGPUFallback"], "8.5.2", "without --useDLACore"),
    (["trtexec", "--loadEngine=e", "--exportLayerInfo=l.json"], "10.3.0", "profilingVerbosity"),
])
def test_rules_catch_what_trtexec_refuses(args, release, problem):
    assert any(problem in p for p in problems(args, release)), problems(args, release)


def test_flag_lists_differ_where_the_releases_do():
    assert "--stronglyTyped" not in accepted_flags("8.6.2") and "--stronglyTyped" in accepted_flags("10.3.0")
    assert "--skipInference" in accepted_flags("8.6.2") and "--buildOnly" in accepted_flags("8.5.2")
    assert "--fp16" not in accepted_flags("11") and "--calib" not in accepted_flags("11")
