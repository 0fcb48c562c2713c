"""TensorRT version parsing, capability guards, calibration cache headers, TensorRT-absent path."""

import builtins
import sys
import types

import pytest

from cosinegate.errors import CosineGateError
from cosinegate import trtversion as versions
from cosinegate.trtversion import (
    calibration_cache_header,
    installed_tensorrt,
    parse_calibration_cache_header,
    parse_version,
    require_tensorrt,
)


@pytest.mark.parametrize(
    "text, parts, major, minor, patch",
    [("8.5.2.2", (8, 5, 2, 2), 8, 5, 2), ("10.3.0", (10, 3, 0), 10, 3, 0),
     ("11.0", (11, 0), 11, 0, 0), ("10", (10,), 10, 0, 0), (" 8.6.1.6 ", (8, 6, 1, 6), 8, 6, 1)],
)
def test_parse_version(text, parts, major, minor, patch):
    version = parse_version(text)
    assert version.parts == parts
    assert (version.major, version.minor, version.patch) == (major, minor, patch)


@pytest.mark.parametrize(
    "text, parts, tail",
    [("10.13.3.9.post1", (10, 13, 3, 9), ".post1"), ("10.14.1.48.post1", (10, 14, 1, 48), ".post1"),
     ("10.0.0b6", (10, 0, 0), "b6"), ("10.3.0.30-1+cuda12.5", (10, 3, 0, 30), "-1+cuda12.5")],
)
def test_parse_version_takes_wheel_and_package_suffixes(text, parts, tail):
    """Real version strings (tensorrt-cu12 wheels, JetPack's dpkg): the suffix is kept but not compared."""
    version = parse_version(text)
    assert (version.parts, version.tail) == (parts, tail)
    assert version == parse_version(".".join(map(str, parts)))
    assert version.supports_strongly_typed


def test_installed_tensorrt_with_post_release(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.3.9.post1"))
    assert installed_tensorrt().parts == (10, 13, 3, 9)


@pytest.mark.parametrize("bad", ["", "ten", "8.5.2.2.1", "8..5", "8.5-foo", "10.3.0.postx"])
def test_parse_version_rejects_garbage(bad):
    with pytest.raises(CosineGateError, match="MAJOR"):
        parse_version(bad)


def test_versions_order_numerically_not_textually():
    assert parse_version("10.3.0") > parse_version("8.6.2")
    assert parse_version("8.10") > parse_version("8.9")


def test_prefix_matching():
    assert parse_version("8.5.2.2").starts_with(parse_version("8.5.2"))
    assert parse_version("10.8.0").starts_with(parse_version("10"))
    assert not parse_version("8.6.2").starts_with(parse_version("8.5"))


@pytest.mark.parametrize(
    "text, v3, strong, strong_only, deprecated, skip_flag",
    [
        ("8.4.1", False, False, False, False, "--buildOnly"),
        ("8.5.2.2", True, False, False, False, "--buildOnly"),
        ("8.6.2", True, False, False, False, "--skipInference"),
        ("9.2.0", True, True, False, False, "--skipInference"),
        ("10.0.1", True, True, False, False, "--skipInference"),
        ("10.1.0", True, True, False, True, "--skipInference"),
        ("10.3.0", True, True, False, True, "--skipInference"),
        ("11.0", True, True, True, True, "--skipInference"),
    ],
)
def test_guards(text, v3, strong, strong_only, deprecated, skip_flag):
    version = parse_version(text)
    assert version.has_execute_async_v3 is v3
    assert version.supports_strongly_typed is strong
    assert version.requires_strongly_typed is strong_only
    assert version.calibrator_deprecated is deprecated
    assert version.skip_inference_flag == skip_flag


@pytest.mark.parametrize(
    "version, method, header",
    [("8.5.2", "entropy2", "TRT-8502-EntropyCalibration2"),
     ("8.5.2.2", "EntropyCalibration2", "TRT-8502-EntropyCalibration2"),
     ("8.6.2", "minmax", "TRT-8602-MinMaxCalibration"),
     ("10.3.0", "minmax", "TRT-100300-MinMaxCalibration"),
     ("10.3.0", "entropy2", "TRT-100300-EntropyCalibration2"),
     ("10.13.3", "entropy", "TRT-101303-EntropyCalibration")],
)
def test_calibration_cache_header_round_trip(version, method, header):
    assert calibration_cache_header(version, method) == header
    parsed_version, algorithm = parse_calibration_cache_header(header + "\n")
    assert parsed_version.parts[:2] == parse_version(version).parts[:2]
    assert parsed_version.patch == parse_version(version).patch
    assert algorithm == header.split("-")[2]


def test_calibration_header_errors():
    with pytest.raises(CosineGateError, match="unknown calibration method"):
        calibration_cache_header("8.5.2", "percentile")
    with pytest.raises(CosineGateError, match="not a TensorRT calibration cache header"):
        parse_calibration_cache_header("input: 3c010a14")
    with pytest.raises(CosineGateError, match="regenerate"):
        parse_calibration_cache_header("TRT-8502-SomethingElse")


def _block_tensorrt(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_require_tensorrt_raises_with_the_fix_when_absent(monkeypatch):
    _block_tensorrt(monkeypatch)
    assert installed_tensorrt() is None
    with pytest.raises(CosineGateError) as caught:
        require_tensorrt("building the engine")
    message = str(caught.value)
    assert "TensorRT is not installed here" in message
    assert "building the engine" in message
    assert "JetPack" in message and "python3-libnvinfer" in message
    assert "pip install tensorrt" in message
    assert "onnxrt backend" in message and "bundle" in message


def test_require_tensorrt_returns_version_when_present(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0.30"))
    assert require_tensorrt("building").parts == (10, 3, 0, 30)
    assert versions.installed_tensorrt().calibrator_deprecated is True


def test_a_release_is_major_minor_patch_and_families_are_not_exact():
    from cosinegate.trtversion import parse_version

    assert parse_version("8.5").release == "8.5.0" and parse_version("10.3.0.26").release == "10.3.0"
    assert parse_version("10.3.0.26").same_release(parse_version("10.3.0"))
    assert not parse_version("10.3.1").same_release(parse_version("10.3.0"))
    assert parse_version("8.5.2").is_exact and not parse_version("10").is_exact and not parse_version("10.15").is_exact


def test_a_version_a_cache_header_cannot_hold_is_refused():
    from cosinegate.errors import CosineGateError
    from cosinegate.trtversion import parse_version

    assert parse_version("10.13.3").nv_tensorrt_version == 101303 and parse_version("8.6.1").nv_tensorrt_version == 8601
    for text in ("8.10.0", "10.100.0", "10.3.100"):
        with pytest.raises(CosineGateError, match="cannot be encoded in a cache header"):
            parse_version(text).nv_tensorrt_version
