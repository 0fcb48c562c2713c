"""The compact form: per dynamic block NonZero rows -> Gather -> the block on the sub-batch -> ScatterND.

Parity is exact on decisions: `gates` equal PyTorch's and the masked form's bit for bit, logits within the fp32
tolerance of the other forms' parity (atol 1e-4, rtol 1e-3), at batch 1, 8 and 32, with half of the images
skipping each block (cosinegate.bench.gate_patterns, as deploy/force_gates.py does), none and all of them.
"""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cosinegate.bench.gate_patterns import force_skip_fraction
from cosinegate.data.augment import to_tensor
from cosinegate.data.normalization import CIFAR10
from cosinegate.errors import CosineGateError
from cosinegate.models import build_model
from cosinegate.onnx import build_flat_graph, compact, export_checkpoint, get_metadata, graph_problems, mask, optimize_flat

BATCHES = (1, 8, 32)
IMAGES = np.random.default_rng(1).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    model = build_model({"backbone": "resnet20", "mode": "predictive"}, 10, 32).eval()
    model.normalization = dict(CIFAR10)
    return model


def _run(model_proto, x):
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


@pytest.mark.parametrize("skip", [0.5, 0.0, 1.0])
def test_compact_matches_pytorch_and_masked_per_sample(base, skip):
    model = force_skip_fraction(copy.deepcopy(base), IMAGES, skip)
    for batch in BATCHES:
        flat = optimize_flat(build_flat_graph(model, batch))
        graph = compact(flat, "conditional-all")
        assert graph_problems(graph) == []
        x = to_tensor(IMAGES[:batch], "cpu", model.normalization).numpy()
        logits, gates = _run(graph, x)
        masked_logits, masked_gates = _run(mask(flat, "conditional-all"), x)
        with torch.no_grad():
            ref_logits, stats = model(torch.from_numpy(x))
        np.testing.assert_array_equal(gates, stats.gates.numpy())
        np.testing.assert_array_equal(gates, masked_gates)
        np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(logits, masked_logits, atol=1e-4, rtol=1e-3)
        if skip in (0.0, 1.0):  # all-run / all-skip batches
            assert np.all(gates == 1.0 - skip), (batch, gates.mean())
        elif batch == 32:  # exact on the images the pattern was made on: every block skips half the batch
            np.testing.assert_array_equal(gates.mean(0), 0.5)


def test_each_dynamic_block_gathers_its_rows_and_scatters_them_back(base):
    flat = optimize_flat(build_flat_graph(base, 8))
    skip_rates = [0.0, 1.0] + [0.5] * 7  # always run, always skipped, dynamic
    graph = compact(flat, "auto", skip_rates)
    assert get_metadata(graph)["form"] == "compact"
    by_name = {node.name: node for node in graph.graph.node}
    assert not [n for n in graph.graph.node if n.op_type == "If"]
    for index in range(2, 9):
        p = f"block{index}/compact"
        assert by_name[f"{p}/nonzero"].op_type == "NonZero"
        assert by_name[f"{p}/scatter"].op_type == "ScatterND" and by_name[f"{p}/scatter"].output[0] == f"block{index}/out"
        conv1 = by_name[f"block{index}/conv1"]
        assert by_name[conv1.input[0]].op_type == "Gather"  # the residual branch reads the sub-batch
    for index in (0, 1):  # static blocks have nothing to gather
        assert f"block{index}/compact/nonzero" not in by_name
    # the graph's interface keeps the static batch
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.graph.output]
    assert dims == [[8, 10], [8, 9]]


def test_paper_gates_are_refused_in_one_line(base):
    torch.manual_seed(0)
    paper = build_model({"backbone": "resnet20", "mode": "paper"}, 10, 32).eval()
    paper.normalization = dict(CIFAR10)
    with pytest.raises(CosineGateError, match="--form masked") as info:
        compact(optimize_flat(build_flat_graph(paper, 4)), "conditional-all")
    assert "\n" not in str(info.value) and "compact" in str(info.value)


def test_export_writes_the_compact_form(dyn_checkpoint, test_images, tmp_path):
    manifest = export_checkpoint(dyn_checkpoint, tmp_path / "c.onnx", "compact", batch=8)
    masked = export_checkpoint(dyn_checkpoint, tmp_path / "m.onnx", "masked", batch=8)
    assert manifest["form"] == "compact" and manifest["batch"] == 8 and manifest["num_if"] == 0
    assert [b["kind"] for b in manifest["blocks"]] == [b["kind"] for b in masked["blocks"]]
    x = to_tensor(test_images.images[:8]).numpy()
    a = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0], atol=1e-4, rtol=1e-3)
