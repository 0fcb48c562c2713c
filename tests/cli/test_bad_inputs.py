"""Bad inputs, command by command: each is refused with one error line, exit status 2, no traceback, nothing written.

Every case runs the command's main(argv) in this process (tests/scripts_in_process.py). A case is
clean when the exit code is 2, stderr holds no traceback and ends in one line starting with
"error:" (argparse's usage line before it is allowed), and the files it names as outputs do not exist.
The table prints how many cases each command was tried with and how many it refused cleanly.
"""

import json
import math
import os
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from scripts_in_process import run

from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint


def _altered(src, dst, change):
    state = load_checkpoint(src)
    change(state)
    save_checkpoint(dst, **{k: v for k, v in state.items() if k != "format"})
    return dst


def _foreign_onnx(path, classes=10, blocks=9):
    """A small graph that merely has the toolkit's input and output names and shapes."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    gates = helper.make_tensor_value_info("gates", TensorProto.FLOAT, [1, blocks])
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Expand", ["m", "ls"], ["logits"]), helper.make_node("Expand", ["m", "gs"], ["gates"])]
    init = [helper.make_tensor("ls", TensorProto.INT64, [2], [1, classes]), helper.make_tensor("gs", TensorProto.INT64, [2], [1, blocks])]
    graph = helper.make_graph(nodes, "foreign", [x], [logits, gates], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _cache(path, header, scales):
    lines = [header] + [f"t{i}: {struct_hex(v)}" for i, v in enumerate(scales)]
    path.write_text("\n".join(lines) + "\n")
    return path


def struct_hex(value):
    return np.float32(value).view(np.uint32).item().to_bytes(4, "big").hex()


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_checkpoint, fake_cifar_root):
    """Files the cases use: damaged checkpoints, foreign graphs, bad caches and configs, a broken image folder."""
    d = tmp_path_factory.mktemp("bad")
    f = {"dir": d}
    f["nan"] = _altered(tiny_checkpoint, d / "nan.pt", lambda s: s["model"]["fc.weight"].fill_(math.nan))
    f["classes7"] = _altered(tiny_checkpoint, d / "c7.pt", lambda s: s.update(num_classes=7))
    f["garbage"] = d / "garbage.bin"
    f["garbage"].write_bytes(b"\x00not a model\xff" * 10)
    f["foreign"] = _foreign_onnx(d / "foreign.onnx")
    f["out_dir"] = d / "existing_dir"
    f["out_dir"].mkdir()
    (f["out_dir"] / "model.conditional.onnx").mkdir()  # export --out DIR writes DIR/model.<form>.onnx: in the way here
    f["a_file"] = d / "a_file"
    f["a_file"].write_text("x")
    f["foreign_csv"] = d / "other.csv"
    f["foreign_csv"].write_text("name,score\nx,1\n")
    header = "TRT-8502-EntropyCalibration2"
    f["cache_inf"] = _cache(d / "inf.cache", header, [1.0, math.inf])
    f["cache_zero"] = _cache(d / "zero.cache", header, [0.0, 1.0])
    f["cache_neg"] = _cache(d / "neg.cache", header, [-1.0])
    f["cache_header"] = _cache(d / "header.cache", "NOT-A-TENSORRT-CACHE", [1.0])
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "string.yaml").write_text("optim:\n  epochs: ten\n")
    f["list_yaml"], f["string_yaml"] = d / "list.yaml", d / "string.yaml"
    images = d / "images"
    for split in ("train", "test"):
        (images / split / "a").mkdir(parents=True)
        (images / split / "b").mkdir(parents=True)
        from PIL import Image

        for cls in ("a", "b"):
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / split / cls / "0.png")
    os.symlink(d / "nowhere.png", images / "train" / "a" / "broken.png")
    f["broken_images"] = images
    return f


def cases(bad, ckpt, cifar):
    """{command: [(label, script, argv, outputs that must not appear)]}."""
    d = bad["dir"]
    data = ["--data", "cifar10", "--data-root", cifar]
    ev, ex, pa = "train/evaluate.py", "deploy/export_onnx.py", "deploy/parity.py"
    ca, be, bn, tr, rp = "calibration/calibrate.py", "deploy/build_engine.py", "deploy/bench.py", "train/train.py", "train/reproduce.py"
    return {
        "evaluate": [
            ("missing checkpoint", ev, ["--checkpoint", d / "none.pt"], []),
            ("NaN weights", ev, ["--checkpoint", bad["nan"], *data], []),
            ("another class count", ev, ["--checkpoint", bad["classes7"], *data], []),
            ("checkpoint is a folder", ev, ["--checkpoint", d], []),
            ("garbage checkpoint", ev, ["--checkpoint", bad["garbage"]], []),
            ("--subset 0", ev, ["--checkpoint", ckpt, *data, "--subset", "0"], []),
            ("--subset -5", ev, ["--checkpoint", ckpt, *data, "--subset", "-5"], []),
            ("--json is a folder", ev, ["--checkpoint", ckpt, *data, "--json", bad["out_dir"]], []),
            ("missing --data-root", ev, ["--checkpoint", ckpt, "--data", "cifar10", "--data-root", d / "nothing"], []),
            ("broken symlink in images", ev, ["--checkpoint", ckpt, "--data", "imagefolder", "--data-root", bad["broken_images"]], []),
        ],
        "export": [
            ("--out without .onnx", ex, ["--checkpoint", ckpt, "--out", d / "m.txt"], [d / "m.txt", d / "m.txt.json"]),
            ("--out is a folder whose model.conditional.onnx is a folder", ex, ["--checkpoint", ckpt, "--out", bad["out_dir"]], []),
            ("--batch 10000000 masked", ex, ["--checkpoint", ckpt, "--form", "masked", "--batch", "10000000", "--out", d / "big.onnx"], [d / "big.onnx"]),
            ("--batch 0", ex, ["--checkpoint", ckpt, "--form", "masked", "--batch", "0", "--out", d / "b0.onnx"], [d / "b0.onnx"]),
            ("unknown opset 99", ex, ["--checkpoint", ckpt, "--opset", "99", "--out", d / "o99.onnx"], [d / "o99.onnx"]),
            ("old opset 5", ex, ["--checkpoint", ckpt, "--opset", "5", "--out", d / "o5.onnx"], [d / "o5.onnx"]),
            ("NaN weights", ex, ["--checkpoint", bad["nan"], "--out", d / "nan.onnx"], [d / "nan.onnx"]),
            ("--out under a file", ex, ["--checkpoint", ckpt, "--out", bad["a_file"] / "m.onnx"], []),
            ("unknown --form", ex, ["--checkpoint", ckpt, "--form", "dense", "--out", d / "f.onnx"], [d / "f.onnx"]),
        ],
        "parity": [
            ("foreign ONNX with the right names", pa, ["--checkpoint", ckpt, "--onnx", bad["foreign"], *data, "--samples", "4"], []),
            ("--samples -3", pa, ["--checkpoint", ckpt, "--onnx", bad["foreign"], "--samples", "-3"], []),
            ("--samples 0", pa, ["--checkpoint", ckpt, "--onnx", bad["foreign"], "--samples", "0"], []),
            ("missing ONNX", pa, ["--checkpoint", ckpt, "--onnx", d / "none.onnx"], []),
            ("garbage ONNX", pa, ["--checkpoint", ckpt, "--onnx", bad["garbage"]], []),
            ("NaN weights", pa, ["--checkpoint", bad["nan"], "--onnx", bad["foreign"]], []),
            ("--report is a folder", pa, ["--checkpoint", ckpt, "--onnx", bad["foreign"], "--report", bad["out_dir"]], []),
        ],
        "calibrate": [
            ("--num-images 0", ca, ["--checkpoint", ckpt, *data, "--num-images", "0", "--out", d / "c1"], [d / "c1"]),
            ("--num-images -1", ca, ["--checkpoint", ckpt, *data, "--num-images", "-1", "--out", d / "c2"], [d / "c2"]),
            ("--batch-size 0", ca, ["--checkpoint", ckpt, *data, "--batch-size", "0", "--out", d / "c3"], [d / "c3"]),
            ("unknown --method", ca, ["--checkpoint", ckpt, *data, "--method", "mean", "--out", d / "c4"], [d / "c4"]),
            ("--percentile 150", ca, ["--checkpoint", ckpt, *data, "--method", "percentile", "--percentile", "150", "--out", d / "c5"], [d / "c5"]),
            ("--trt-version 7", ca, ["--checkpoint", ckpt, *data, "--trt-version", "7", "--out", d / "c6"], [d / "c6"]),
            ("garbage --cache-in", ca, ["--checkpoint", ckpt, "--cache-in", bad["garbage"], "--out", d / "c7"], [d / "c7"]),
            ("--out is a file", ca, ["--checkpoint", ckpt, *data, "--num-images", "8", "--out", bad["a_file"]], []),
            ("unknown --forms", ca, ["--checkpoint", ckpt, *data, "--forms", "flat,dense", "--out", d / "c9"], [d / "c9"]),
            ("NaN weights", ca, ["--checkpoint", bad["nan"], *data, "--out", d / "c10"], [d / "c10"]),
        ],
        "build_engine": [
            ("cache with inf scale", be, ["--target", "jetson-orin", "--onnx", bad["foreign"], "--precision", "int8", "--int8", "cache",
                                          "--calib-cache", bad["cache_inf"], "--out", d / "e1"], [d / "e1"]),
            ("cache with zero scale", be, ["--target", "jetson-orin", "--onnx", bad["foreign"], "--precision", "int8", "--int8", "cache",
                                           "--calib-cache", bad["cache_zero"], "--out", d / "e2"], [d / "e2"]),
            ("cache with negative scale", be, ["--target", "jetson-orin", "--onnx", bad["foreign"], "--precision", "int8", "--int8", "cache",
                                               "--calib-cache", bad["cache_neg"], "--out", d / "e3"], [d / "e3"]),
            ("cache with foreign header", be, ["--target", "jetson-orin", "--onnx", bad["foreign"], "--precision", "int8", "--int8", "cache",
                                               "--calib-cache", bad["cache_header"], "--out", d / "e4"], [d / "e4"]),
            ("unknown --target", be, ["--target", "jetson-nano-9000", "--checkpoint", ckpt, "--out", d / "e5"], [d / "e5"]),
            ("--batch 0", be, ["--target", "jetson-orin", "--checkpoint", ckpt, "--form", "masked", "--batch", "0", "--out", d / "e6"], [d / "e6"]),
            ("--workspace -5", be, ["--target", "jetson-orin", "--checkpoint", ckpt, "--workspace", "-5", "--out", d / "e7"], [d / "e7"]),
            ("foreign ONNX", be, ["--target", "jetson-orin", "--onnx", bad["foreign"], "--out", d / "e8"], [d / "e8"]),
            ("NaN weights", be, ["--target", "jetson-orin", "--checkpoint", bad["nan"], "--out", d / "e9"], [d / "e9"]),
        ],
        "bench": [
            ("--samples -3", bn, ["--checkpoint", ckpt, "--backend", "torch", "--samples", "-3", "--iterations", "2"], []),
            ("--duration 1e-7", bn, ["--checkpoint", ckpt, "--backend", "torch", "--duration", "1e-7"], []),
            ("--duration -1", bn, ["--checkpoint", ckpt, "--backend", "torch", "--duration", "-1"], []),
            ("--iterations 0", bn, ["--checkpoint", ckpt, "--backend", "torch", "--iterations", "0"], []),
            ("--threads 0", bn, ["--checkpoint", ckpt, "--backend", "torch", "--threads", "0"], []),
            ("--warmup -1", bn, ["--checkpoint", ckpt, "--backend", "torch", "--warmup", "-1", "--iterations", "2"], []),
            ("missing ONNX", bn, ["--onnx", d / "none.onnx"], []),
            ("garbage ONNX", bn, ["--onnx", bad["garbage"]], []),
            ("foreign ONNX", bn, ["--onnx", bad["foreign"], "--iterations", "2"], []),
            ("garbage --dense-onnx", bn, ["--checkpoint", ckpt, *data, "--backend", "onnxrt", "--compare-dense", "--dense-onnx", bad["garbage"],
                                          "--iterations", "2", "--samples", "4"], []),
            ("foreign --dense-onnx", bn, ["--checkpoint", ckpt, *data, "--backend", "onnxrt", "--compare-dense", "--dense-onnx", bad["foreign"],
                                          "--iterations", "2", "--samples", "4"], []),
            ("NaN weights", bn, ["--checkpoint", bad["nan"], "--backend", "torch", "--iterations", "2"], []),
            ("--csv is a folder", bn, ["--checkpoint", ckpt, "--backend", "torch", "--iterations", "2", "--samples", "4",
                                       "--csv", bad["out_dir"]], []),
            ("--csv with another header", bn, ["--checkpoint", ckpt, "--backend", "torch", "--iterations", "2", "--samples", "4",
                                               "--csv", bad["foreign_csv"]], []),
        ],
        "train": [
            ("--subset 0", tr, [*data, "--subset", "0", "--epochs", "1", "--out", d / "t1"], [d / "t1"]),
            ("--epochs 0", tr, [*data, "--epochs", "0", "--out", d / "t2"], [d / "t2"]),
            ("--epochs -1", tr, [*data, "--epochs", "-1", "--out", d / "t3"], [d / "t3"]),
            ("--batch-size 0", tr, [*data, "--epochs", "1", "--batch-size", "0", "--out", d / "t4"], [d / "t4"]),
            ("--lr nan", tr, [*data, "--epochs", "1", "--lr", "nan", "--out", d / "t5"], [d / "t5"]),
            ("--lr -1", tr, [*data, "--epochs", "1", "--lr", "-1", "--out", d / "t6"], [d / "t6"]),
            ("YAML config that is a list", tr, ["--config", bad["list_yaml"], *data, "--epochs", "1", "--out", d / "t7"], [d / "t7"]),
            ("YAML string for a number", tr, ["--config", bad["string_yaml"], *data, "--out", d / "t8"], [d / "t8"]),
            ("missing config", tr, ["--config", d / "none.yaml", *data, "--epochs", "1", "--out", d / "t9"], [d / "t9"]),
            ("--drop-blocks a,b", tr, [*data, "--epochs", "1", "--drop-blocks", "a,b", "--out", d / "t10"], [d / "t10"]),
            ("--drop-blocks 99", tr, [*data, "--epochs", "1", "--drop-blocks", "99", "--out", d / "t11"], [d / "t11"]),
            ("--out is a file", tr, [*data, "--epochs", "1", "--out", bad["a_file"]], []),
            ("broken symlink in images", tr, ["--data", "imagefolder", "--data-root", bad["broken_images"], "--epochs", "1",
                                              "--out", d / "t13"], [d / "t13"]),
            ("--target 2", tr, [*data, "--epochs", "1", "--target", "2", "--out", d / "t14"], [d / "t14"]),
        ],
        "reproduce": [
            (label, rp, [*data, "--backbones", "resnet20", "--presets", "dense", "--epochs", "1", *argv, "--out", d / f"r{i}"], [d / f"r{i}"])
            for i, (label, argv) in enumerate([
                ("--epochs 0", ["--epochs", "0"]), ("--seeds 0", ["--seeds", "0"]), ("--subset 0", ["--subset", "0"]),
                ("--static-curve -1", ["--static-curve", "-1"]), ("unknown backbone", ["--backbones", "resnet7"]),
                ("unknown preset", ["--presets", "fastest"]), ("--jobs x", ["--jobs", "x"]), ("--time-limit -1", ["--time-limit", "-1"]),
            ])
        ],
    }


def _clean(code, err, outputs):
    """Exit 2, no traceback, exactly one error line and it is the last (progress bars and argparse's usage may
    come before it), and no output written."""
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or ": error: " in line]
    return (code == 2 and "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0]
            and not any(os.path.exists(o) for o in outputs))


def test_bad_inputs_are_refused_cleanly(bad, tiny_checkpoint, fake_cifar_root, capsys):
    threads = torch.get_num_threads()
    tally, failures = Counter(), []
    try:
        for command, rows in cases(bad, tiny_checkpoint, fake_cifar_root).items():
            for label, script, argv, outputs in rows:
                code, _, err = run(script, *argv)
                tally[command, "tried"] += 1
                if _clean(code, err, outputs):
                    tally[command, "clean"] += 1
                else:
                    failures.append(f"{command} {label}: exit {code}: {err.strip()[-300:]}")
    finally:
        torch.set_num_threads(threads)
    with capsys.disabled():
        print("\nbad inputs per command (tried / refused cleanly): " + json.dumps(
            {c: f"{tally[c, 'tried']}/{tally[c, 'clean']}" for c, _ in sorted(tally) if _ == "tried"}))
    assert not failures, "\n".join(failures)
