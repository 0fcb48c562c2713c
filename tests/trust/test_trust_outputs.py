"""Outputs from strangers' inputs: no write through a planted link, no output over an input, nothing half-written.

Every command refuses an output path that is one of its inputs (the same file by inode, or a link to it),
and writes a report through a fresh temporary renamed over a regular file only: an existing symlink,
FIFO or device at the output path is refused in one line. The board's build_on_device.sh writes its
results fresh and refuses a link or non-file anywhere in the bundle.
"""

import json
import os

import pytest
from test_bundle import bundle_copy, bundled, run_device_script  # noqa: F401 - fixtures


@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_device_script_refuses_a_result_file_linked_outside(bundle_copy, tmp_path, link):  # noqa: F811
    """A symlink, or a hard link (GNU tar links a hard-link member to a file of that name in the folder it unpacks
    into), as a results file would be written through by the script's first redirect."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (bundle_copy / "results").mkdir(exist_ok=True)
    link(outside, bundle_copy / "results" / "sha256sum.txt")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "results/sha256sum.txt in the bundle is a link (hard links" in done.stderr, done.stderr
    assert outside.read_text() == "precious\n" and not (tmp_path / "trtexec.log").exists()


def test_device_script_refuses_a_fifo_or_link_anywhere_in_the_bundle(bundle_copy, tmp_path):  # noqa: F811
    os.mkfifo(bundle_copy / "results.fifo")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "results.fifo in the bundle is a link (hard links included) or not a plain file" in done.stderr, done.stderr
    os.remove(bundle_copy / "results.fifo")
    os.symlink("/etc/hostname", bundle_copy / "extra")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "extra in the bundle is a link" in done.stderr, done.stderr


# ---- an output that is an input, or a link / FIFO where a report goes ----

from scripts_in_process import run  # noqa: E402


@pytest.fixture(scope="module")
def graph(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("graph") / "m.onnx"
    code, _, err = run("deploy/export_onnx.py", "--checkpoint", tiny_checkpoint, "--out", out)
    assert code == 0, err
    return out


def _cases(ckpt, graph, d):
    """(label, script, argv, path that must stay as it was, message)."""
    link = d / "stdout"
    fifo = d / "report.fifo"
    onnx_named = d / "ckpt.onnx"
    return [
        ("evaluate --json the checkpoint", "train/evaluate.py", ["--checkpoint", ckpt, "--json", ckpt], ckpt, "is the checkpoint"),
        ("evaluate --plot the checkpoint", "train/evaluate.py", ["--checkpoint", ckpt, "--plot", ckpt], ckpt, "is the checkpoint"),
        ("evaluate --json a link to stdout", "train/evaluate.py", ["--checkpoint", ckpt, "--json", link], link, "is a symbolic link"),
        ("evaluate --json a FIFO", "train/evaluate.py", ["--checkpoint", ckpt, "--json", fifo], fifo, "not a regular file"),
        ("export --out the checkpoint", "deploy/export_onnx.py", ["--checkpoint", onnx_named, "--out", onnx_named], onnx_named,
         "is the checkpoint"),
        ("export --json the checkpoint", "deploy/export_onnx.py", ["--checkpoint", ckpt, "--out", d / "x.onnx", "--json", ckpt], ckpt,
         "is the checkpoint"),
        ("parity --save-reference the graph", "deploy/parity.py", ["--checkpoint", ckpt, "--onnx", graph, "--save-reference", graph],
         graph, "is the ONNX file"),
        ("parity --json the checkpoint", "deploy/parity.py", ["--checkpoint", ckpt, "--onnx", graph, "--json", ckpt], ckpt,
         "is the checkpoint"),
        ("parity --save-inputs the graph", "deploy/parity.py", ["--checkpoint", ckpt, "--onnx", graph, "--save-reference", d / "r.json",
                                                                "--save-inputs", graph], graph, "is the ONNX file"),
        ("calibrate --out the checkpoint's folder", "calibration/calibrate.py", ["--checkpoint", ckpt, "--out", ckpt.parent], ckpt,
         "holds the checkpoint"),
        ("calibrate --out a link to a folder", "calibration/calibrate.py", ["--checkpoint", ckpt, "--out", d / "cal-link"],
         d / "cal-link", "symbolic link"),
        ("calibrate --json the checkpoint", "calibration/calibrate.py", ["--checkpoint", ckpt, "--out", d / "c", "--json", ckpt], ckpt,
         "is the checkpoint"),
        ("bench --json the graph", "deploy/bench.py", ["--onnx", graph, "--json", graph], graph, "is the ONNX file"),
        ("bench --csv the checkpoint", "deploy/bench.py", ["--checkpoint", ckpt, "--backend", "torch", "--csv", ckpt], ckpt,
         "is the checkpoint"),
        ("force_gates --out the checkpoint", "deploy/force_gates.py", ["--checkpoint", ckpt, "--out", ckpt], ckpt, "is the checkpoint"),
        ("evaluate_int8 --json the checkpoint", "calibration/evaluate_int8.py", ["--checkpoint", ckpt, "--json", ckpt], ckpt,
         "is the checkpoint"),
        ("build_engine --json the graph", "deploy/build_engine.py", ["--target", "jetson-orin", "--onnx", graph, "--json", graph],
         graph, "is the ONNX file"),
        # a new user's finding: the whole evaluation ran before the report could not be written
        ("evaluate --json under a file", "train/evaluate.py", ["--checkpoint", ckpt, "--json", d / "ckpt.onnx" / "e.json"],
         d / "ckpt.onnx", "lies under " + str(d / "ckpt.onnx") + ", which is not a folder"),
        ("calibrate --out under a file", "calibration/calibrate.py", ["--checkpoint", ckpt, "--out", d / "ckpt.onnx" / "c"],
         d / "ckpt.onnx", "which is not a folder"),
    ]


def test_an_output_that_is_an_input_or_a_link_is_refused_before_any_work(tiny_checkpoint, graph, tmp_path):
    import shutil

    ckpt = tmp_path / "run" / "c.pt"
    ckpt.parent.mkdir()
    shutil.copy(tiny_checkpoint, ckpt)
    shutil.copy(tiny_checkpoint, tmp_path / "ckpt.onnx")
    os.symlink("/proc/self/fd/1", tmp_path / "stdout")
    os.mkfifo(tmp_path / "report.fifo")
    (tmp_path / "earlier").mkdir()
    os.symlink(tmp_path / "earlier", tmp_path / "cal-link")
    failures = []
    for label, script, argv, kept, message in _cases(ckpt, graph, tmp_path):
        before = os.lstat(kept)
        digest = None if not os.path.isfile(kept) or os.path.islink(kept) else open(kept, "rb").read()
        code, _, err = run(script, *argv)
        after = os.lstat(kept)
        same = (before.st_ino, before.st_mode) == (after.st_ino, after.st_mode) and (digest is None or open(kept, "rb").read() == digest)
        lines = [line for line in err.splitlines() if line.strip()]
        if not (code == 2 and "Traceback" not in err and lines and message in lines[-1] and len(lines) == 1 and same):
            failures.append(f"{label}: exit {code}, kept {same}: {err.strip()[-300:]}")
    assert sorted(os.listdir(tmp_path)) == sorted(["run", "ckpt.onnx", "stdout", "report.fifo", "earlier", "cal-link"])
    assert not failures, "\n".join(failures)


def test_json_reports_can_go_to_stdout_with_a_dash(tiny_checkpoint, capsys):
    code, out, err = run("train/evaluate.py", "--checkpoint", tiny_checkpoint, "--subset", "10", "--json", "-")
    assert code == 0, err
    assert '"checkpoint": "' in out and not os.path.exists("-")
    assert json.loads(out)["checkpoint"] and "top-1" in err  # stdout holds the report alone: `--json - | jq` works


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch):
    import torch

    from cosinegate.errors import CosineGateError
    from cosinegate.training import checkpoint as ckpt

    ckpt.save_checkpoint(tmp_path / "last.pt", epoch=0)
    before = (tmp_path / "last.pt").read_bytes()

    def full(state, path):
        open(path, "wb").write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CosineGateError, match="cannot write checkpoint .*last.pt .*disk is full"):
        ckpt.save_checkpoint(tmp_path / "last.pt", epoch=1)
    assert (tmp_path / "last.pt").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("where", ["initializer", "function", "sparse"])
def test_device_script_refuses_a_graph_reading_external_data_outside_the_bundle(bundle_copy, tmp_path, where):  # noqa: F811
    """An initializer, a model-local function's constant or a sparse initializer naming ../secret.bin."""
    import hashlib

    import numpy as np
    import onnx
    from onnx import TensorProto, helper
    from test_trust_bundle import with_external_function

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(4, np.float32).tobytes())
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../secret.bin")
    graph = helper.make_graph([helper.make_node("Add", ["input", "input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])
    if where == "initializer":
        graph.initializer.append(weight)
    elif where == "sparse":
        graph.sparse_initializer.append(helper.make_sparse_tensor(weight, helper.make_tensor("i", TensorProto.INT64, [4], [0, 1, 2, 3]), [4]))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if where == "function":
        model = with_external_function(model, "../secret.bin")
    onnx.save(model, str(bundle_copy / "extra.onnx"))
    digest = hashlib.sha256((bundle_copy / "extra.onnx").read_bytes()).hexdigest()
    with open(bundle_copy / "SHA256SUMS", "a") as sums:
        sums.write(f"{digest}  extra.onnx\n")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "extra.onnx reads external data '../secret.bin'" in done.stderr, done.stderr
    assert not (tmp_path / "trtexec.log").exists()


def test_device_script_still_builds_a_clean_bundle(bundle_copy, tmp_path):  # noqa: F811
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 0, done.stderr
