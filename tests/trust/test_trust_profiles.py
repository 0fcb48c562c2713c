"""Target profiles from strangers: read with tomllib/tomli, every bad one refused in one line naming file and field."""

import re

import pytest
from scripts_in_process import run

from cosinegate.errors import CosineGateError
from cosinegate.trt import targets
from cosinegate.trt.targets import load_target

ORIN = (targets.DEFAULT_TARGETS_DIR / "jetson-orin.toml").read_text()
RELEASE = '\n[[tensorrt]]\nversion = "8.5.2"\njetpack = ["5.1"]\nmax_onnx_opset = 17\n'


def _variant(folder, name, text=None, data=None):
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    if data is not None:
        path.write_bytes(data)
    else:
        path.write_text(text.replace('name = "jetson-orin"', f'name = "{name}"'), encoding="utf-8")
    return name


BAD = {  # label: (profile text change, message)
    "arrays nested 3000 deep": (lambda t: t.replace('description = "', 'x = ' + "[" * 3000 + "]" * 3000 + '\ndescription = "'),
                                "nested 3000 deep"),
    "a code point past U+10FFFF": (lambda t: t.replace('description = "NVIDIA', 'description = "\\U00110000'), "not valid profile TOML"),
    "a lone surrogate": (lambda t: t.replace('description = "NVIDIA', 'description = "\\uD800'), "not valid profile TOML"),
    "default_workspace_mib 10**30": (lambda t: t.replace("default_workspace_mib = 4096", "default_workspace_mib = " + "1" + "0" * 30),
                                     "'default_workspace_mib' is 1000000000000000000000000000000; give 1..1048576 MiB"),
    "a release listed twice": (lambda t: t + RELEASE, "'tensorrt' lists release 8.5.2 more than once"),
    "opset 10**9": (lambda t: t.replace("max_onnx_opset = 17", "max_onnx_opset = 1000000000", 1), "not an ONNX opset number"),
    "dla_cores 10**6": (lambda t: t.replace("dla_cores = 2", "dla_cores = 1000000"), "'dla_cores' is 1000000; give 0..16"),
    "a rail name tegrastats never prints": (lambda t: t.replace('total_power_rails = ["VDD_GPU_SOC"', 'total_power_rails = ["VDD-GPU"'),
                                            "'total_power_rails' has 'VDD-GPU', not a tegrastats rail name"),
}


@pytest.mark.parametrize("label", sorted(BAD))
def test_a_bad_profile_is_refused_in_one_line(tmp_path, label):
    change, message = BAD[label]
    name = _variant(tmp_path, "board", change(ORIN))
    with pytest.raises(CosineGateError) as info:
        load_target(name, tmp_path)
    text = str(info.value)
    assert message in text and "\n" not in text and str(tmp_path / "board.toml") in text, text


def test_non_utf8_bytes_are_refused_in_one_line(tmp_path):
    _variant(tmp_path, "board", data=ORIN.replace("jetson-orin", "board").encode() + b"\n# \xff\xfe\n")
    with pytest.raises(CosineGateError, match=r"board.toml: not UTF-8 text \(byte \d+\)"):
        load_target("board", tmp_path)


@pytest.mark.parametrize("name", ["..", "", ".hidden", "x\ny", "-orin", "a b", "$(id)"])
def test_a_target_is_a_plain_name(name):
    with pytest.raises(CosineGateError, match="not a plain name"):
        load_target(name)


@pytest.mark.parametrize("name", ["../targets/jetson-orin", "/etc/passwd", "a/b", "x/.."])
def test_a_target_from_a_file_is_never_a_path(name):
    with pytest.raises(CosineGateError, match="not a plain name"):
        load_target(name, allow_path=False)


def test_a_users_target_may_be_a_path_to_a_plainly_named_profile(tmp_path):
    (tmp_path / "board.toml").write_text(ORIN.replace('name = "jetson-orin"', 'name = "board"'))
    assert load_target(str(tmp_path / "board")).name == "board"
    with pytest.raises(CosineGateError, match="not a plain name"):
        load_target(str(tmp_path / ".."))


def test_a_profile_named_dotdot_cannot_send_outputs_to_the_checkout_root(tmp_path):
    """a profile ...toml has the stem `..`: its name field `..` would make engines/<target> the checkout root."""
    (tmp_path / "...toml").write_text(ORIN.replace('name = "jetson-orin"', 'name = ".."'))
    with pytest.raises(CosineGateError, match="not a plain name"):
        load_target("..", tmp_path)
    with pytest.raises(CosineGateError, match="not a plain name"):
        targets._profile_from({**targets.read_profile_toml(tmp_path / "...toml")}, tmp_path / "...toml")


def test_build_engine_refuses_a_dotdot_target_in_one_line(tmp_path):
    code, _, err = run("deploy/build_engine.py", "--target", "..", "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in err and re.search("not a plain name", err), err
    assert not (tmp_path / "o").exists()


def test_every_shipped_profile_still_loads():
    for name in targets.list_targets():
        assert load_target(name).name == name
