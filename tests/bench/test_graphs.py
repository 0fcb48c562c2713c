"""graph_info reads a toolkit graph's metadata, MAC table, block kinds and If count; anything else (a foreign file, a
toolkit-looking graph whose logits are not [N, classes]) is one CosineGateError, never an IndexError."""

import onnx
import pytest

from cosinegate.bench.graphs import graph_info
from cosinegate.errors import CosineGateError
from cosinegate.onnx import export_checkpoint


@pytest.fixture(scope="module")
def conditional(tiny_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("graphs") / "model.conditional.onnx"
    export_checkpoint(tiny_checkpoint, path, "conditional", 1)
    return path


def test_a_toolkit_graph_is_read(conditional):
    meta, table, kinds, num_if, classes = graph_info(conditional)
    assert meta["form"] == "conditional" and len(kinds) == len(meta["blocks"])
    assert num_if == sum(node.op_type == "If" for node in onnx.load(str(conditional)).graph.node)
    assert classes == len(meta["classes"]) == table.classifier // 64  # ResNet-20's 64 features into the classes


def test_logits_of_another_rank_are_one_line(conditional, tmp_path):
    """Reachable through bench --compare-dense --dense-onnx, where no runtime has opened the file before."""
    model = onnx.load(str(conditional))
    logits = next(o for o in model.graph.output if o.name == "logits")
    del logits.type.tensor_type.shape.dim[1]
    path = tmp_path / "rank1.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CosineGateError, match="output `logits` is not \\[N, classes\\]"):
        graph_info(path)


def test_a_file_that_is_no_graph_is_one_line(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not a graph\xff" * 10)
    with pytest.raises(CosineGateError, match="not a readable ONNX file"):
        graph_info(path)
