"""Target profiles: every shipped file loads and validates; errors name the file and field."""

from pathlib import Path

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.trt.targets import (
    DEFAULT_TARGETS_DIR,
    HostInfo,
    check_dla_core,
    target_runtime,
    check_opset,
    host_matches,
    list_targets,
    load_target,
    max_opset,
)
from cosinegate.trtversion import parse_version

SHIPPED = [
    "desktop", "jetson-agx-xavier", "jetson-orin", "jetson-orin-nano", "jetson-orin-nx",
    "jetson-xavier-nx",
]


def test_list_targets_finds_every_shipped_file():
    assert list_targets() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_target_loads(name):
    profile = load_target(name)
    assert profile.name == name
    assert profile.source == DEFAULT_TARGETS_DIR / f"{name}.toml"
    assert profile.precisions == ("fp32", "fp16", "int8")
    assert profile.default_int8_path == "qdq" and "cache" in profile.int8_paths
    assert profile.use_dla is False and profile.gpu_fallback is True
    assert profile.default_workspace_mib > 0
    versions = [release.version for release in profile.tensorrt]
    assert versions == sorted(versions)


@pytest.mark.parametrize(
    "name, arch, capabilities, dla, jetpack_trt",
    [
        ("jetson-orin", "aarch64", ("8.7",), 2, {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0"}),
        ("jetson-orin-nx", "aarch64", ("8.7",), 2, {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0"}),
        ("jetson-orin-nano", "aarch64", ("8.7",), 0, {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0"}),
        ("jetson-xavier-nx", "aarch64", ("7.2",), 2, {"5.1": "8.5.2"}),
        ("jetson-agx-xavier", "aarch64", ("7.2",), 2, {"5.1": "8.5.2"}),
        ("desktop", "x86_64", ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"), 0, {}),
    ],
)
def test_target_facts(name, arch, capabilities, dla, jetpack_trt):
    profile = load_target(name)
    assert profile.arch == arch
    assert profile.compute_capabilities == capabilities
    assert profile.dla_cores == dla
    found = {jp: str(r.version) for r in profile.tensorrt for jp in r.jetpack}
    assert found == jetpack_trt
    assert profile.is_jetson is bool(jetpack_trt)


def test_xavier_boards_stop_at_tensorrt_8_5():
    for name in ("jetson-xavier-nx", "jetson-agx-xavier"):
        assert str(load_target(name).newest_tensorrt) == "8.5.2"


def test_unknown_target_lists_valid_ones():
    with pytest.raises(CosineGateError) as caught:
        load_target("jetson-nano-classic")
    message = str(caught.value)
    assert "jetson-nano-classic" in message
    for name in SHIPPED:
        assert name in message


def _write(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _valid_text(name="board"):
    text = (DEFAULT_TARGETS_DIR / "jetson-orin-nano.toml").read_text()
    return text.replace('name = "jetson-orin-nano"', f'name = "{name}"')


def test_a_new_target_is_just_a_file(tmp_path):
    _write(tmp_path, "board", _valid_text())
    assert list_targets(tmp_path) == ["board"]
    assert load_target("board", tmp_path).dla_cores == 0


def test_dla_board_without_gpu_fallback_is_refused(tmp_path):
    text = (DEFAULT_TARGETS_DIR / "jetson-orin.toml").read_text().replace('name = "jetson-orin"', 'name = "board"')
    assert load_target("jetson-orin").if_on_dla is False
    _write(tmp_path, "board", text.replace("gpu_fallback = true", "gpu_fallback = false", 1))
    with pytest.raises(CosineGateError, match="If layers cannot run on DLA"):
        load_target("board", tmp_path)


@pytest.mark.parametrize(
    "old, new, field",
    [
        ('arch = "aarch64"', 'arch = "arm64"', "arch"),
        ("dla_cores = 0", 'dla_cores = "none"', "dla_cores"),
        ("dla_cores = 0\n", "", "dla_cores"),
        ('default_int8_path = "qdq"', 'default_int8_path = "ptq"', "default_int8_path"),
        ('precisions = ["fp32", "fp16", "int8"]', 'precisions = ["fp32", "fp8"]', "precisions"),
        ("use_dla = false", "use_dla = true", "use_dla"),
        ("default_workspace_mib = 1024", "default_workspace_mib = 0", "default_workspace_mib"),
        ("max_onnx_opset = 17", 'max_onnx_opset = "17"', "tensorrt[0].max_onnx_opset"),
        ('version = "8.5.2"', 'version = "eight"', "tensorrt[0].version"),
        ("if_on_dla = false", 'if_on_dla = "no"', "if_on_dla"),
        ('name = "board"', 'name = "other"', "name"),
        # text that reaches build_on_device.sh, the bundle README and file names: no control characters
        ('description = "', 'description = "x\\nrm -rf ~ #', "description"),
        ('jetpack = ["', 'jetpack = ["6.1\\u001b', "tensorrt[0].jetpack"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path, old, new, field):
    text = _valid_text()
    assert old in text
    path = _write(tmp_path, "board", text.replace(old, new, 1))
    with pytest.raises(CosineGateError) as caught:
        load_target("board", tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert f"'{field}'" in message


def test_broken_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "board", "name = \n")
    with pytest.raises(CosineGateError, match="not valid profile TOML") as caught:
        load_target("board", tmp_path)
    assert str(path) in str(caught.value)


def test_check_dla_core():
    orin, nano = load_target("jetson-orin"), load_target("jetson-orin-nano")
    check_dla_core(orin, None)
    check_dla_core(orin, 0)
    check_dla_core(orin, 1)
    with pytest.raises(CosineGateError, match="use a core from 0 to 1"):
        check_dla_core(orin, 2)
    with pytest.raises(CosineGateError, match="use a core from 0 to 1"):
        check_dla_core(orin, -1)
    with pytest.raises(CosineGateError, match="jetson-orin-nano has no DLA"):
        check_dla_core(nano, 0)


def test_opset_limits_per_release():
    orin = load_target("jetson-orin")
    assert max_opset(orin, "8.5.2.2") == 17
    assert max_opset(orin, "8.6.2") == 17
    assert max_opset(orin, "10.3.0") == 20
    assert max_opset(orin) == 17
    check_opset(orin, 17, "8.5.2")
    check_opset(orin, 20, "10.3.0")
    with pytest.raises(CosineGateError, match=r"opset 18 .*TensorRT 8\.5\.2.*export with opset 17"):
        check_opset(orin, 18, "8.5.2")
    with pytest.raises(CosineGateError, match="export with opset 17"):
        check_opset(orin, 20)
    with pytest.raises(CosineGateError, match=r"not a release of target jetson-orin .*8\.5\.2, 8\.6\.2, 10\.3\.0"):
        check_opset(orin, 13, "10.8.0")


def test_desktop_versions_match_by_prefix():
    desktop = load_target("desktop")
    assert max_opset(desktop, "8.6.1.6") == 17
    assert max_opset(desktop, "10.8.0") == 19
    assert max_opset(desktop, "10.15.1") == 24
    assert max_opset(desktop, "11.4.0.106") == 24
    with pytest.raises(CosineGateError, match="not a release"):
        max_opset(desktop, "8.5.3")


@pytest.mark.parametrize(
    "target, host, ok, reason",
    [
        ("jetson-orin", HostInfo("aarch64", "8.7", "8.5.2.2"), True, "TensorRT 8.5.2"),
        ("jetson-orin", HostInfo("aarch64", 8.7, None), True, "TensorRT version unknown"),
        ("jetson-orin", HostInfo("aarch64", (8, 7), "10.3.0.30"), True, "TensorRT 10.3.0"),
        ("jetson-orin", HostInfo("x86_64", "8.6", "10.3.0"), False, "host is x86_64"),
        ("jetson-orin", HostInfo("aarch64", "7.2", "8.5.2"), False, "compute capability 7.2"),
        ("jetson-xavier-nx", HostInfo("aarch64", "7.2", "10.3.0"), False, "runs 8.5.2"),
        ("desktop", HostInfo("x86_64", "8.9", "10.7.0"), True, "TensorRT 10"),
        ("desktop", HostInfo("x86_64", "6.1", "10.7.0"), False, "compute capability 6.1"),
        ("desktop", HostInfo("x86_64", (12, 0), "11.4.0.106"), True, "TensorRT 11"),
        ("desktop", HostInfo("x86_64", "10.0", "10.15.1.29"), True, "TensorRT 10.15"),
    ],
)
def test_host_matches(target, host, ok, reason):
    matched, why = host_matches(load_target(target), host)
    assert matched is ok
    assert reason in why


def test_release_for_prefers_the_longest_prefix():
    desktop = load_target("desktop")
    assert desktop.release_for("10.15.1").version == parse_version("10.15")
    assert desktop.release_for("10.1").version == parse_version("10")
    assert desktop.release_for("9.2") is None


def test_default_targets_dir_is_package_data_and_the_checkout_links_to_it():
    import cosinegate.trt

    assert DEFAULT_TARGETS_DIR == Path(cosinegate.trt.__file__).resolve().parent / "profiles"
    assert (Path(__file__).resolve().parents[2] / "engines" / "targets").resolve() == DEFAULT_TARGETS_DIR


def test_a_file_name_given_as_a_target_name_gets_a_path_hint():
    with pytest.raises(CosineGateError, match=r"no such profile file here; a target is a name \(.*jetson-orin.*\) or the path") as err:
        load_target("t1.toml")
    assert "t1.toml.toml" not in str(err.value)


def test_a_target_may_be_the_profile_files_own_path(tmp_path, monkeypatch):
    """--target DIR/board.toml, DIR/board and board.toml (in the current folder) all load DIR/board.toml; an unknown
    shipped name points at writing a profile, not at the installed package's folder."""
    _write(tmp_path, "board", _valid_text())
    assert load_target(str(tmp_path / "board.toml")).name == load_target(str(tmp_path / "board")).name == "board"
    ort = (DEFAULT_TARGETS_DIR / "cpu-onnxruntime.toml").read_text()
    (tmp_path / "my-cpu.toml").write_text(ort.replace('name = "cpu-onnxruntime"', 'name = "my-cpu"'))
    assert target_runtime(str(tmp_path / "my-cpu.toml")) == "onnxruntime"  # the path's own profile was read
    with pytest.raises(CosineGateError, match=r"target profile .*missing\.toml is not a file; fix the path"):
        load_target(str(tmp_path / "missing.toml"))
    monkeypatch.chdir(tmp_path)
    assert load_target("board.toml").name == "board"
    with pytest.raises(CosineGateError, match=r"write a profile .* --target \./boards\.toml\.$") as err:
        load_target("boards")
    # the shipped folder is where to copy a profile from, wherever the package is installed (new-user audit: it named
    # the checkout's engines/targets/), never where to add one
    assert f"copy one of {DEFAULT_TARGETS_DIR}/*.toml" in str(err.value) and "add boards.toml" not in str(err.value)


def test_onnxruntime_profile_kept_apart_from_tensorrt_ones(tmp_path):
    from cosinegate.trt.targets import load_ort_target, target_runtime

    assert "cpu-onnxruntime" not in list_targets() and "cpu-onnxruntime" in list_targets(runtime=None)
    assert target_runtime("cpu-onnxruntime") == "onnxruntime" and target_runtime("jetson-orin") == "tensorrt"
    assert load_ort_target("cpu-onnxruntime").precisions == ("fp32",)
    with pytest.raises(CosineGateError, match="runs on ONNX Runtime, not TensorRT"):
        load_target("cpu-onnxruntime")
    text = (DEFAULT_TARGETS_DIR / "cpu-onnxruntime.toml").read_text()
    (tmp_path / "cpu-onnxruntime.toml").write_text(text.replace('["fp32"]', '["fp16"]'))
    with pytest.raises(CosineGateError, match="'precisions' has 'fp16'"):
        load_ort_target("cpu-onnxruntime", tmp_path)


def test_every_jetson_profile_names_the_tensorrt_its_jetpack_ships():
    """trtversion.JETPACKS (the bundle README's table, the short release names) and the profiles' [[tensorrt]]
    jetpack lists are one fact: a JetPack a profile lists ships that release."""
    from cosinegate.trtversion import JETPACKS, SHORT_RELEASES

    seen = set()
    for name in list_targets():
        for release in load_target(name).tensorrt:
            for jetpack in release.jetpack:
                assert parse_version(JETPACKS[jetpack].tensorrt) == release.version, (name, jetpack)
                seen.add(jetpack)
    assert seen == set(JETPACKS)
    assert set(SHORT_RELEASES.values()) <= {j.tensorrt for j in JETPACKS.values()}
    assert all(full.startswith(short + ".") for short, full in SHORT_RELEASES.items())
