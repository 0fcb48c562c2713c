import struct

import numpy as np
import pytest

from cosinegate.errors import CosineGateError
from cosinegate.quant.cache import (
    ENTROPY,
    MINMAX,
    algorithm_for,
    check_cache,
    format_header,
    parse_cache,
    parse_header,
    scale_hex,
    write_cache,
)


@pytest.mark.parametrize(
    "version, algorithm, header",
    [
        ("8.5.2", ENTROPY, "TRT-8502-EntropyCalibration2"),
        ("8.5.2.2", MINMAX, "TRT-8502-MinMaxCalibration"),
        ("8.2.3", ENTROPY, "TRT-8203-EntropyCalibration2"),
        ("8.6.2", MINMAX, "TRT-8602-MinMaxCalibration"),
        ("10.3.0", ENTROPY, "TRT-100300-EntropyCalibration2"),
        ("10.16.1.11", MINMAX, "TRT-101601-MinMaxCalibration"),
    ],
)
def test_header_format_and_parse(version, algorithm, header):
    assert format_header(version, algorithm) == header
    assert parse_header(header) == (tuple(int(p) for p in version.split(".")[:3]), algorithm)


@pytest.mark.parametrize("header", ["TRT-EntropyCalibration2", "TRT-8502", "trt-8502-MinMax", "TRT-55555-MinMaxCalibration"])
def test_bad_header_refused(header):
    with pytest.raises(CosineGateError):
        parse_header(header)


@pytest.mark.parametrize("version", ["8.5", "ten.3.0", "8.5.2.1.0", "8.10.0"])
def test_bad_version_refused(version):
    with pytest.raises(CosineGateError):
        format_header(version, ENTROPY)


def test_scale_hex_matches_tensorrt_encoding():
    # amax 1.0 -> scale 1/127 -> 0x3c010204 as TensorRT writes it for [0, 1] inputs.
    assert scale_hex(1.0) == "3c010204"
    assert struct.unpack(">f", bytes.fromhex("3c010a14"))[0] == pytest.approx(1.00024 / 127, rel=1e-5)


def test_round_trip_is_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    amax = {f"/layer{i}/Relu_output_0": float(v) for i, v in enumerate(rng.lognormal(0, 2, 50))}
    amax["input_1:0"] = 1.0  # TensorFlow-style name with a colon
    path = tmp_path / "calib.cache"
    write_cache(path, amax, format_header("8.5.2", ENTROPY))
    header, scales = parse_cache(path)
    assert header == "TRT-8502-EntropyCalibration2"
    assert scales.keys() == amax.keys()
    for name, value in amax.items():
        expected = np.float32(value / 127.0)
        assert np.float32(scales[name]).tobytes() == expected.tobytes()
    text = path.read_text()
    assert parse_cache(text) == (header, scales)
    assert "input_1:0: 3c010204" in text.splitlines()


def test_parse_real_cache_text():
    text = "TRT-100300-EntropyCalibration2\ninput_1:0: 3c010a14\nconv1/convolution:0: 3d0b7086"
    header, scales = parse_cache(text)
    assert parse_header(header) == ((10, 3, 0), ENTROPY)
    assert list(scales) == ["input_1:0", "conv1/convolution:0"]
    assert scales["conv1/convolution:0"] == struct.unpack(">f", bytes.fromhex("3d0b7086"))[0]


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not a cache\nx: 3c010204\n",
        "TRT-8502-EntropyCalibration2\nx 3c010204\n",
        "TRT-8502-EntropyCalibration2\nx: zz010204\n",
        "TRT-8502-EntropyCalibration2\nx: 3c0102041\n",
        "TRT-8502-EntropyCalibration2\nx: 3c010204\nx: 3c010204\n",
        "TRT-8502-EntropyCalibration2\nx: 7fc00000\n",
        "TRT-8502-EntropyCalibration2\nx: bc010204\n",
    ],
)
def test_corrupt_cache_refused(tmp_path, content):
    path = tmp_path / "calib.cache"
    path.write_text(content)
    with pytest.raises(CosineGateError, match="recalibrate|regenerate"):
        parse_cache(path)


def test_binary_and_missing_cache_refused(tmp_path):
    path = tmp_path / "calib.cache"
    path.write_bytes(b"TRT-8502-EntropyCalibration2\n\xff\xfe: 00\n")
    with pytest.raises(CosineGateError, match="not plain text"):
        parse_cache(path)
    with pytest.raises(CosineGateError, match="not found"):
        parse_cache(tmp_path / "absent.cache")
    from cosinegate.trtversion import MAX_CACHE_BYTES

    huge = tmp_path / "huge.cache"  # attacker review: read whole, whatever its size
    with open(huge, "wb") as handle:
        handle.truncate(MAX_CACHE_BYTES + 1)
    with pytest.raises(CosineGateError, match=f"huge.cache is over {MAX_CACHE_BYTES} bytes"):
        parse_cache(huge)


def test_write_refuses_bad_amax(tmp_path):
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CosineGateError, match="amax"):
            write_cache(tmp_path / "c.cache", {"x": bad}, format_header("8.5.2", ENTROPY))
    assert not (tmp_path / "c.cache").exists()


def test_check_cache_accepts_match_and_refuses_mismatch(tmp_path):
    path = tmp_path / "calib.cache"
    write_cache(path, {"x": 2.0}, format_header("8.5.2", ENTROPY))
    assert check_cache(path, "8.5.2.2", ENTROPY) == {"x": float(np.float32(2.0 / 127))}
    with pytest.raises(CosineGateError) as version_error:
        check_cache(path, "10.3.0", ENTROPY)
    message = str(version_error.value)
    assert "built for TensorRT 8.5.2 with EntropyCalibration2" in message
    assert "this target uses TensorRT 10.3.0" in message
    assert "cosinegate calibrate --trt-version 10.3.0" in message
    with pytest.raises(CosineGateError, match="with MinMaxCalibration"):
        check_cache(path, "8.5.2", MINMAX)


def test_algorithm_for_methods():
    assert algorithm_for("entropy", "8.5.2") == ENTROPY
    assert algorithm_for("minmax", "10.3.0") == MINMAX
    assert algorithm_for("percentile", "8.5.2") == MINMAX
    with pytest.raises(CosineGateError, match="entropy, minmax, percentile"):
        algorithm_for("mse", "8.5.2")


def test_every_reader_of_a_cache_caps_it(tmp_path, monkeypatch):
    """Diff review: the build path (cache_calibrator, check_cache_version) and the bundle's per-release copies read
    a cache whole whatever its size; each goes through read_cache_text now."""
    from cosinegate import trtversion
    from cosinegate.trt.build import cache_calibrator, check_cache_version
    from cosinegate.trt.bundle import release_caches
    from cosinegate.trt.targets import load_target
    from cosinegate.trtversion import parse_version

    path = tmp_path / "calib.cache"
    write_cache(path, {"input": 1.0}, format_header("8.5.2", ENTROPY))
    assert cache_calibrator(path) == "entropy2"
    monkeypatch.setattr(trtversion, "MAX_CACHE_BYTES", path.stat().st_size - 1)
    for read in (cache_calibrator, lambda p: check_cache_version(p, parse_version("8.5.2")),
                 lambda p: release_caches(p, load_target("jetson-orin"))):
        with pytest.raises(CosineGateError, match="calib.cache is over"):
            read(path)
