"""The ORT-native conditional graph: NCHWc kernels inside each If, same function as the portable graph."""

import numpy as np
import onnx
import pytest

from cosinegate.data.augment import to_tensor
from cosinegate.onnx import export_checkpoint
from cosinegate.onnx.ort_native import ort_native_conditional
from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner
from cosinegate.training.checkpoint import load_checkpoint


@pytest.mark.parametrize("policy", ["auto", "conditional-all"])
def test_ort_native_matches_portable_conditional(policy, dyn_checkpoint, test_images, tmp_path):
    import onnxruntime as ort

    export_checkpoint(dyn_checkpoint, tmp_path / "flat.onnx", "flat")
    export_checkpoint(dyn_checkpoint, tmp_path / "cond.onnx", "conditional", policy=policy)
    native = ort_native_conditional(onnx.load(str(tmp_path / "flat.onnx")), policy, load_checkpoint(dyn_checkpoint)["skip_rates"])
    onnx.save(native, str(tmp_path / "native.onnx"))
    portable = onnx.load(str(tmp_path / "cond.onnx"))
    ifs = [n for n in native.graph.node if n.op_type == "If"]
    assert len(ifs) == sum(n.op_type == "If" for n in portable.graph.node) > 0
    # the point of the form: blocked-layout (NCHWc) convolutions inside the branches
    then_ops = {(n.domain, n.op_type) for node in ifs for a in node.attribute if a.name == "then_branch" for n in a.g.node}
    assert ("com.microsoft.nchwc", "Conv") in then_ops
    reference = ort.InferenceSession(str(tmp_path / "cond.onnx"), providers=["CPUExecutionProvider"])
    candidate = OnnxRuntimeRunner(tmp_path / "native.onnx").activate().session  # loads it unoptimized, by its metadata
    executed = []
    for i in range(40):
        x = to_tensor(test_images.images[i : i + 1]).numpy()
        (ref_logits, ref_gates), (logits, gates) = reference.run(None, {"input": x}), candidate.run(None, {"input": x})
        np.testing.assert_array_equal(gates, ref_gates)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=1e-3)
        executed.append(gates)
    executed = np.concatenate(executed)
    assert 0 < executed[:, 2:].mean() < 1  # dynamic blocks really took both branches
