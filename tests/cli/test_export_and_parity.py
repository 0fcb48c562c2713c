"""deploy/export_onnx.py and deploy/parity.py: end to end, exit codes, and one-line errors on bad input."""

import importlib.util
import json

import numpy as np
import onnx
import pytest
from conftest import run_script
from onnx import numpy_helper

from cosinegate.cli import run_main


def load_script(name):
    return importlib.import_module(f"cosinegate.cli.{name}")


EXPORT, PARITY = load_script("export_onnx"), load_script("parity")


def run_in_process(script, argv, capsys):
    """(exit code, stdout, stderr) of a script's main under run_main, in this process."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: script.main([str(a) for a in argv]))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_export_then_parity_end_to_end(dyn_checkpoint, fake_cifar_root, tmp_path):
    out, report = tmp_path / "model.onnx", tmp_path / "parity.json"
    exported = run_script("deploy/export_onnx.py", "--checkpoint", dyn_checkpoint, "--out", out)
    assert exported.returncode == 0, exported.stderr
    assert "7 If" in exported.stdout and json.loads((tmp_path / "model.onnx.json").read_text())["num_if"] == 7
    checked = run_script("deploy/parity.py", "--checkpoint", dyn_checkpoint, "--onnx", out, "--data", "cifar10",
                         "--data-root", fake_cifar_root, "--samples", 16, "--report", report)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = json.loads(report.read_text())
    for key in ("passed", "gate_agreement", "gate_agreement_per_block", "top1_agreement", "max_abs_err", "num_samples",
                "flipped_blocks", "static_policy_disagreement", "summary"):
        assert key in result
    assert result["passed"] and result["num_samples"] == 16 and "PASSED" in checked.stdout
    from cosinegate.artifacts import sha256_file

    assert result["inputs"]["onnx"]["sha256"] == sha256_file(out)  # the report names its inputs by hash
    assert result["inputs"]["checkpoint"]["sha256"] == sha256_file(dyn_checkpoint)


def test_failed_parity_exits_1_and_names_the_block(dyn_checkpoint, fake_cifar_root, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert run_in_process(EXPORT, ["--checkpoint", dyn_checkpoint, "--out", out], capsys)[0] == 0
    graph = onnx.load(str(out))
    for tensor in graph.graph.initializer:
        if tensor.name == "block4/gate/control/bias":
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) - np.float32(50), tensor.name))
    onnx.save(graph, str(out))
    code, stdout, _ = run_in_process(PARITY, ["--checkpoint", dyn_checkpoint, "--onnx", out, "--data", "cifar10",
                                              "--data-root", fake_cifar_root, "--samples", 16], capsys)
    assert code == 1 and "FAILED" in stdout and "block4" in stdout


def test_compact_export_passes_parity_at_batch_8(dyn_checkpoint, fake_cifar_root, tmp_path, capsys):
    out, report = tmp_path / "compact.onnx", tmp_path / "parity.json"
    code, stdout, _ = run_in_process(EXPORT, ["--checkpoint", dyn_checkpoint, "--out", out, "--form", "compact",
                                              "--batch", 8], capsys)
    assert code == 0 and "compact" in stdout and "batch 8" in stdout
    code, stdout, _ = run_in_process(PARITY, ["--checkpoint", dyn_checkpoint, "--onnx", out, "--data", "cifar10",
                                              "--data-root", fake_cifar_root, "--samples", 16, "--report", report], capsys)
    result = json.loads(report.read_text())
    assert code == 0 and result["passed"] and result["gate_agreement"] == 1.0 and result["num_samples"] == 16, stdout


def bad_cases(dyn, paper, tmp):
    """(name, script, argv, expected message fragment)."""
    foreign = tmp / "foreign.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    good = tmp / "good.onnx"
    out = tmp / "out.onnx"
    return good, out, [
        ("missing checkpoint", EXPORT, ["--checkpoint", tmp / "nope.pt", "--out", out], "not found"),
        ("corrupt checkpoint", EXPORT, ["--checkpoint", foreign, "--out", out], "corrupt"),
        ("batch with conditional", EXPORT, ["--checkpoint", dyn, "--out", out, "--batch", 8], "--batch 1"),
        ("paper conditional", EXPORT, ["--checkpoint", paper, "--out", out], "--form masked"),
        ("paper compact", EXPORT, ["--checkpoint", paper, "--out", out, "--form", "compact", "--batch", 8], "--form masked"),
        ("unknown form", EXPORT, ["--checkpoint", dyn, "--out", out, "--form", "sparse"], "invalid choice: 'sparse'"),
        ("bad skip-rates file", EXPORT, ["--checkpoint", dyn, "--out", out, "--skip-rates", foreign], "skip-rates"),
        ("foreign onnx", PARITY, ["--checkpoint", dyn, "--onnx", foreign], "not produced by this toolkit"),
        ("mismatched checkpoint", PARITY, ["--checkpoint", paper, "--onnx", good], "exported from another checkpoint"),
        ("unknown backend", PARITY, ["--checkpoint", dyn, "--onnx", good, "--backend", "tflite"], "unknown backend"),
        ("tensorrt absent", PARITY, ["--checkpoint", dyn, "--onnx", good, "--backend", "trt", "--test-images", 2], "TensorRT"),
    ]


def test_bad_inputs_fail_with_one_line_and_exit_2(dyn_checkpoint, paper_checkpoint, tmp_path, capsys):
    good, out, cases = bad_cases(dyn_checkpoint, paper_checkpoint, tmp_path)
    assert run_in_process(EXPORT, ["--checkpoint", dyn_checkpoint, "--out", good], capsys)[0] == 0
    trt_installed = importlib.util.find_spec("tensorrt") is not None
    for name, script, argv, fragment in cases:
        if name == "tensorrt absent" and trt_installed:
            continue
        code, _, err = run_in_process(script, argv, capsys)
        assert code == 2, name
        assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, (name, err)
        assert not out.exists(), name


def test_bad_input_in_a_subprocess_has_no_traceback(paper_checkpoint, tmp_path):
    result = run_script("deploy/export_onnx.py", "--checkpoint", paper_checkpoint, "--out", tmp_path / "p.onnx")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--form masked" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_parity_profile_follows_the_graph_on_onnxrt():
    """Reviewer finding: a Q/DQ graph without --int8 failed with no hint; --int8 on an FP32 graph loosened its check."""
    import onnx
    from onnx import TensorProto, helper

    from cosinegate.errors import CosineGateError

    from cosinegate.pipeline.parity_check import check_profile_fits

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    plain = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain", [x], [y]))
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    branch = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
                                helper.make_node("DequantizeLinear", ["q", "s"], ["y"])], "b", [], [y], [scale])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    qdq = helper.make_model(helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
                                              "qdq", [x, cond], [y]))
    onnx.checker.check_model(qdq)
    check_profile_fits(plain, False, "plain.onnx")
    check_profile_fits(qdq, True, "qdq.onnx")  # Q/DQ inside an If branch counts
    with pytest.raises(CosineGateError, match="is an INT8 Q/DQ graph; add --int8"):
        check_profile_fits(qdq, False, "qdq.onnx")
    with pytest.raises(CosineGateError, match="has no Q/DQ nodes .* drop --int8"):
        check_profile_fits(plain, True, "plain.onnx")
