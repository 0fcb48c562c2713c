"""Values out of every range (infinity, ints past a float's range or Python's digit limit, nesting 100,000 deep, a
weight on no device, a compressed checkpoint member): one line each, never a traceback or gigabytes allocated."""

import json
import re
import zipfile

import pytest
import torch
from scripts_in_process import run

from cosinegate.errors import CosineGateError
from cosinegate.training import checkpoint as ckpt

HUGE = 10**400  # past a float: math.isfinite and float() raise OverflowError


def _deep(levels):
    value = []
    for _ in range(levels):
        value = [value]
    return value


def _changed(source, path, change):
    import sys

    state = torch.load(source, weights_only=True)
    change(state)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # torch.save pickles a nested value recursively (the loader does not)
    try:
        torch.save(state, path)
    finally:
        sys.setrecursionlimit(limit)
    return path


CHECKPOINTS = {  # label: (change of a trained checkpoint, part of the message)
    "drop_blocks [inf]": (lambda s: s["config"]["model"].update(drop_blocks=[float("inf")]), "drop_blocks = [inf]"),
    "drop_blocks 3": (lambda s: s["config"]["model"].update(drop_blocks=3), "its model config: drop_blocks = 3; give"),
    "gate_hidden 10**6": (lambda s: s["config"]["model"].update(gate_hidden=10**6), "gate_hidden = 1000000"),
    "open_bias nan": (lambda s: s["config"]["model"].update(open_bias=float("nan")), "open_bias = nan"),
    "config nested 10,000 deep": (lambda s: s.update(config=_deep(10_000)), "nested over 64 deep"),
    "skip_rates [10**400]": (lambda s: s.update(skip_rates=[HUGE] * 9), "skip_rates = [1000"),
    "normalization mean 10**400": (lambda s: s.update(normalization={"mean": [HUGE] * 3, "std": [1.0] * 3}),
                                   "has no 3 means and 3 stds"),
    "a weight on the meta device": (lambda s: s["model"].update({"fc.weight": torch.empty(s["model"]["fc.weight"].shape,
                                                                                          device="meta")}),
                                    "is a torch.float32 tensor on meta"),
    "a complex weight": (lambda s: s["model"].update({"fc.weight": s["model"]["fc.weight"].to(torch.complex64)}),
                         "is a torch.complex64 tensor on cpu"),
}


@pytest.mark.parametrize("label", sorted(CHECKPOINTS))
def test_a_checkpoint_value_out_of_every_range_is_one_line(tiny_checkpoint, tmp_path, label):
    change, message = CHECKPOINTS[label]
    path = _changed(tiny_checkpoint, tmp_path / "bad.pt", change)
    code, _, err = run("train/evaluate.py", "--checkpoint", path, "--subset", "10")
    assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_whole_numbers_of_other_types_are_still_block_indices():
    # numpy ints (a library caller's) and integral floats (an older config's [1.0], trained through int()) stay valid
    import numpy as np

    from cosinegate.models.choices import block_indices
    from cosinegate.models.network import CosineGateNet

    assert block_indices("drop_blocks", np.array([4, 1]), "resnet20", 9) == [1, 4]
    assert block_indices("drop_blocks", [1.0, 3], "resnet20", 9) == [1, 3]
    model = CosineGateNet(drop_blocks=(2,), gate_hidden=np.int64(8), open_bias=np.float32(2.0))
    assert model.drop_blocks == (2,) and model.blocks[1].gate is not None
    with pytest.raises(CosineGateError, match=r"drop_blocks = \[1.5\]"):
        block_indices("drop_blocks", [1.5], "resnet20", 9)


def test_a_checkpoint_with_compressed_members_is_refused_unread(tiny_checkpoint, tmp_path):
    # torch.save stores members as they are; a deflated one is a crafted file (~1000:1 before any check)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(tiny_checkpoint) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for member in source.infolist():
            out.writestr(member.filename, source.read(member))
    with pytest.raises(CosineGateError, match="has compressed members .* refused unread"):
        ckpt.load_checkpoint(bomb)


@pytest.mark.parametrize("text, message", [
    ("optim: {lr: 1" + "0" * 400 + "}\n", "optim.lr = 1000"),
    ("optim: {gate_lr_scale: 1" + "0" * 400 + "}\n", "optim.gate_lr_scale = 1000"),
    ("seed: 1" + "0" * 5000 + "\n", "is not valid YAML"),
    ("seed: 1" + "0" * 400 + "\n", "is out of range; give a number in [0, 4294967295]"),
    ("data: {normalization: [[1" + "0" * 400 + ", 0, 0], [1, 1, 1]]}\n", "data.normalization = [[1000"),
    ("model: {drop_blocks: [.inf]}\n", "model.drop_blocks = [inf]"),
])
def test_a_config_number_out_of_every_range_is_one_line(tmp_path, text, message):
    from cosinegate.config import load_config, validate

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(CosineGateError, match=re.escape(message)):
        validate(load_config(str(tmp_path / "c.yaml")))


def test_versions_and_cache_headers_of_thousands_of_digits_are_one_line():
    from cosinegate.quant.cache import parse_header
    from cosinegate.trtversion import parse_calibration_cache_header, parse_version

    for call in (lambda: parse_version("9" * 5000), lambda: parse_calibration_cache_header("TRT-" + "9" * 5000 + "-Entropy"),
                 lambda: parse_header("TRT-" + "9" * 5000 + "-Entropy"), lambda: parse_version("٨.٥.٢")):
        with pytest.raises(CosineGateError):
            call()
    with pytest.raises(CosineGateError, match="is not of the form TRT-<version>-<algorithm>"):  # ASCII digits only
        parse_header("TRT-٨٥٠٢-EntropyCalibration2")


def test_an_if_cost_table_with_a_huge_number_is_one_line(tmp_path):
    from cosinegate.onnx.costtable import TABLE_FORMAT, load_table

    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"format": TABLE_FORMAT, "blocks": [{"block": 1, "latency_us": HUGE, "if_cost_us": 1.0}]}))
    with pytest.raises(CosineGateError, match="malformed block row"):
        load_table(path)


def test_a_graph_onnx_runtime_refuses_is_one_line(tiny_checkpoint, tmp_path):
    import onnx

    code, _, err = run("deploy/export_onnx.py", "--checkpoint", tiny_checkpoint, "--out", tmp_path / "m.onnx")
    assert code == 0, err
    model = onnx.load(str(tmp_path / "m.onnx"))
    next(n for n in model.graph.node if n.op_type == "Relu").op_type = "NoSuchOp"  # standard domain: it passes our checks
    onnx.save(model, str(tmp_path / "bad.onnx"))
    code, _, err = run("deploy/bench.py", "--onnx", tmp_path / "bad.onnx", "--iterations", "2", "--test-images", "2")
    assert code == 2 and "is not a graph ONNX Runtime loads (" in err and "Traceback" not in err and err.count("\n") == 1, err
