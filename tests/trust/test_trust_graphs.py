"""Graphs and their metadata from outside: checked as they are read, one line naming the field and what is allowed.

Each row alters one thing of an exported conditional graph (every gated block an If); loading it with
load_toolkit_onnx, and `bench --onnx` on it, must be a clean refusal: never a traceback, a hang, made-up
MACs from metadata that disagrees with the graph, or a read of a file outside the graph's folder.
"""

import json

import onnx
import pytest
from onnx import TensorProto, helper
from scripts_in_process import run

from cosinegate.errors import CosineGateError
from cosinegate.onnx.checks import load_toolkit_onnx


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("graphs") / "m.onnx"
    code, _, err = run("deploy/export_onnx.py", "--checkpoint", tiny_checkpoint, "--out", out, "--policy", "conditional-all")
    assert code == 0, err
    model = onnx.load(str(out))
    assert any(n.op_type == "If" for n in model.graph.node)
    return out


def _meta(key, value):
    return _raw_meta(key, json.dumps(value))


def _raw_meta(key, text):
    def change(model):
        props = [p for p in model.metadata_props if p.key == "cosinegate." + key]
        prop = props[0] if props else model.metadata_props.add(key="cosinegate." + key)
        prop.value = text
        return model
    return change


def _input(dims=None, elem=None):
    def change(model):
        tensor = model.graph.input[0].type.tensor_type
        if elem is not None:
            tensor.elem_type = elem
        if dims is not None:
            for d, v in zip(tensor.shape.dim, dims):
                d.dim_value = v
        return model
    return change


def _ir(version):
    def change(model):
        model.ir_version = version
        return model
    return change


def _custom_node(model):
    model.graph.node.insert(0, helper.make_node("Evil", ["input"], ["evil_out"], domain="com.example.evil", name="evil"))
    model.opset_import.append(helper.make_opsetid("com.example.evil", 1))
    return model


def _else_shape(model):
    node = next(n for n in model.graph.node if n.op_type == "If")
    branch = next(a.g for a in node.attribute if a.name == "else_branch")
    branch.output[0].type.tensor_type.shape.dim[1].dim_value += 1
    return model


def _external(location):
    def change(model):
        tensor = model.graph.initializer[0]
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value=location)
        return model
    return change


def _function_node(model):
    """A model-local function whose body holds a node of a foreign domain (its body is not the graph's)."""
    evil = helper.make_node("Evil", ["x"], ["y"], domain="com.example.evil")
    model.functions.append(helper.make_function("local", "F", ["x"], ["y"], [evil], [helper.make_opsetid("com.example.evil", 1)]))
    return model


def _function_external(model):
    from test_trust_bundle import with_external_function

    return with_external_function(model, "../outside.bin")


def _sparse(model):
    values = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))
    return model


ROWS = {  # label: (change, part of the message)
    "metadata blocks = [1, 2, 3]": (_meta("blocks", [1, 2, 3]), "cosinegate.blocks = [1, 2, 3] is not a list of blocks"),
    "metadata lists 3 blocks of 9": (_meta("blocks", [{"kind": "dynamic", "post": "relu"}] * 3),
                                     "lists 3 blocks but the graph's gates output has 9"),
    "metadata input_size 'abc'": (_meta("input_size", "abc"), "cosinegate.input_size = 'abc'"),
    "metadata input_size of another size": (_meta("input_size", [3, 64, 64]), "disagrees with the graph's input 32x32"),
    "metadata checkpoint_sha256 12345": (_meta("checkpoint_sha256", 12345), "cosinegate.checkpoint_sha256 = 12345 is not a SHA-256"),
    "metadata data a list": (_meta("data", ["cifar10"]), "cosinegate.data = ['cifar10'] is not a data source"),
    "metadata nested 100000 deep": (_raw_meta("classes", "[" * 100000 + "]" * 100000), "nested over 64 deep"),
    "metadata nested 100 deep": (_raw_meta("extra", "[" * 100 + "]" * 100), "nested over 64 deep"),
    "input 1x3x4096x4096": (_input([1, 3, 4096, 4096]), "disagrees with the graph's input 4096x4096"),
    "input 1x4x32x32": (_input([1, 4, 32, 32]), "not N x 3 x S x S with S in 8..1024"),
    "input float16": (_input(elem=TensorProto.FLOAT16), "not float32"),
    "unknown custom-domain node": (_custom_node, "is of domain 'com.example.evil'"),
    "ir_version 99": (_ir(99), "IR version 99"),
    "If else-branch of another shape": (_else_shape, "declares other outputs in its branches"),
    "external data ../outside": (_external("../outside.bin"), "reads external data '../outside.bin'"),
    "external data in a model-local function": (_function_external, "1 model-local function(s); the toolkit exports none"),
    "custom-domain node in a model-local function": (_function_node, "1 model-local function(s); the toolkit exports none"),
    "sparse initializer": (_sparse, "holds sparse tensors"),
    "external data /etc/hostname": (_external("/etc/hostname"), "reads external data '/etc/hostname'"),
    # sub is a link to the folder above (made in the test): the last name is a plain file, a folder on the way is not
    "external data through a linked folder": (_external("sub/outside.bin"), "reads external data 'sub/outside.bin'"),
}


@pytest.mark.parametrize("label", sorted(ROWS))
def test_a_bad_graph_is_refused_in_one_line(exported, tmp_path, label):
    change, message = ROWS[label]
    model = change(onnx.load(str(exported)))
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "sub").symlink_to(tmp_path)
    path = tmp_path / "g" / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CosineGateError) as info:
        load_toolkit_onnx(path)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    code, _, err = run("deploy/bench.py", "--onnx", path, "--iterations", "2", "--test-images", "2")
    assert code == 2 and "Traceback" not in err and message in err, err


def test_the_exported_graph_itself_loads(exported):
    assert load_toolkit_onnx(exported).graph.input[0].name == "input"


def test_a_provenance_manifest_of_another_shape_claims_nothing(exported, tmp_path):
    # an older export's <graph>.onnx.json names the checkpoint; a claim that is no SHA-256 is no claim (it was a TypeError)
    import json

    from cosinegate.artifacts import sha256_file
    from cosinegate.onnx.provenance import claimed_checkpoint

    graph = tmp_path / "old.onnx"
    graph.write_bytes(exported.read_bytes())
    manifest = {"onnx_sha256": sha256_file(graph), "checkpoint_sha256": 7}
    (tmp_path / "old.onnx.json").write_text(json.dumps(manifest))
    assert claimed_checkpoint(graph, {}) == (None, None)
    (tmp_path / "old.onnx.json").write_text(json.dumps({**manifest, "checkpoint_sha256": "a" * 64}))
    assert claimed_checkpoint(graph, {}) == ("a" * 64, str(tmp_path / "old.onnx.json"))
