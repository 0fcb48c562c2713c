"""ONNX export: the flat twin, graph cleanliness, conditionalize (If per dynamic block), masked form, policy auto."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from cosinegate.errors import CosineGateError
from cosinegate.onnx import (
    block_node_names,
    build_flat_graph,
    conditionalize,
    export_checkpoint,
    graph_problems,
    is_toolkit_onnx,
    load_toolkit_onnx,
    optimize_flat,
)
from cosinegate.onnx.export import get_metadata

KINDS = ["always_run", "always_skipped"] + ["dynamic"] * 7


@pytest.fixture(scope="module")
def exported(dyn_checkpoint, tmp_path_factory):
    """{name: (path, manifest)} for the forms the tests look at."""
    folder = tmp_path_factory.mktemp("onnx")
    specs = {
        "flat": dict(form="flat"),
        "auto": dict(form="conditional"),
        "all": dict(form="conditional", policy="conditional-all"),
        "masked": dict(form="masked", batch=4),
    }
    return {name: (folder / f"{name}.onnx", export_checkpoint(dyn_checkpoint, folder / f"{name}.onnx", **kw)) for name, kw in specs.items()}


def load(exported, name):
    return onnx.load(str(exported[name][0]))


def all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)


def run_ort(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def test_skip_rates_of_the_fixture_make_the_intended_classes(dyn_checkpoint):
    from cosinegate.evaluation import block_classes
    from cosinegate.training.checkpoint import load_checkpoint

    assert block_classes(load_checkpoint(dyn_checkpoint)["skip_rates"]) == KINDS


@pytest.mark.parametrize("name", ["flat", "auto", "all", "masked"])
def test_every_form_is_clean_and_runs(exported, name):
    model = load(exported, name)
    assert graph_problems(model) == []
    assert not [n for n in all_nodes(model.graph) if n.op_type == "BatchNormalization"]
    batch = exported[name][1]["batch"]
    logits, gates = run_ort(exported[name][0], np.zeros((batch, 3, 32, 32), np.float32))
    assert logits.shape == (batch, 10) and gates.shape == (batch, 9)
    assert set(np.unique(gates)) <= {0.0, 1.0}


def test_flat_twin_has_stable_names_and_no_if(exported):
    model = load(exported, "flat")
    names = {n.name for n in model.graph.node}
    assert {"stem/conv", "block3/conv1", "block3/conv2", "block3/add", "block3/gate/logit", "block3/gate/decision"} <= names
    assert "block3/out" in {o for n in model.graph.node for o in n.output}
    assert not [n for n in model.graph.node if n.op_type == "If"]
    assert get_metadata(model)["form"] == "flat"


def test_conditional_all_wraps_every_gated_block_in_an_if(exported):
    model = load(exported, "all")
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    assert [n.name for n in ifs] == [f"block{i}/if" for i in range(9)]
    types = {v.name: v.type.tensor_type for v in model.graph.value_info}
    for node in ifs:
        cond = types[node.input[0]]
        assert cond.elem_type == onnx.TensorProto.BOOL and len(cond.shape.dim) == 0
        branches = {a.name: a.g for a in node.attribute}
        (then_out,), (else_out,) = branches["then_branch"].output, branches["else_branch"].output
        assert then_out.name != else_out.name and node.output[0] not in (then_out.name, else_out.name)
        shape = lambda o: [d.dim_value for d in o.type.tensor_type.shape.dim]  # noqa: E731
        assert shape(then_out) == shape(else_out) and all(shape(then_out))
        index = node.name.split("/")[0]
        assert {f"{index}/conv1", f"{index}/conv2"} <= {n.name for n in branches["then_branch"].node}


def test_policy_auto_removes_always_skipped_and_keeps_always_run_plain(exported):
    model = load(exported, "auto")
    assert [b["kind"] for b in exported["auto"][1]["blocks"]] == KINDS
    assert exported["auto"][1]["num_if"] == 7
    assert sorted(n.name for n in model.graph.node if n.op_type == "If") == [f"block{i}/if" for i in range(2, 9)]
    names = {n.name for n in all_nodes(model.graph)}
    assert not {n for n in names if n.startswith("block1/conv") or n.startswith("block1/gate/")}
    assert {"block0/conv1", "block0/conv2"} <= {n.name for n in model.graph.node}  # plain, in the main graph
    assert not {n for n in names if n.startswith("block0/gate/")}
    fixed = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert fixed["block0/gate/fixed"].tolist() == [[1.0]] and fixed["block1/gate/fixed"].tolist() == [[0.0]]


def test_masked_form_runs_batches_without_if(exported):
    model = load(exported, "masked")
    assert not [n for n in model.graph.node if n.op_type == "If"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 3, 32, 32]


def test_block_node_names_split_residual_shortcut_and_gate(exported):
    flat = block_node_names(load(exported, "flat"))
    assert len(flat) == 9
    b3 = flat[3]
    assert b3["residual"] == ["block3/conv1", "block3/relu1", "block3/conv2", "block3/add", "block3/relu"]
    assert b3["shortcut"] == ["block3/shortcut/slice", "block3/shortcut/pad"]
    assert "block3/gate/logit" in b3["gate"] and "block3/gate/decision" in b3["gate"]
    assert flat[4]["shortcut"] == []  # identity shortcut
    conditional = block_node_names(load(exported, "auto"))
    assert conditional[3]["residual"] == b3["residual"][:-1] + ["block3/out_then"]  # the If output's node: see conditionalize
    assert conditional[1]["residual"] == [] and conditional[0]["gate"] == []


def test_conditionalize_keeps_nodes_inserted_into_the_flat_twin(dyn_checkpoint):
    """A pass may insert nodes (e.g. Q/DQ) in a residual branch; they move into the If with it."""
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, state = model_from_checkpoint(dyn_checkpoint)
    flat = optimize_flat(build_flat_graph(model))
    relu1 = next(n for n in flat.graph.node if n.name == "block2/relu1")
    relu1.input[0] = "block2/conv1_copy"
    flat.graph.node.append(helper.make_node("Identity", ["block2/conv1"], ["block2/conv1_copy"], name="block2/inserted"))
    from cosinegate.onnx.passes import infer_shapes, toposort

    toposort(flat.graph)
    assert graph_problems(infer_shapes(flat)) == []
    graph = conditionalize(flat, "conditional-all")
    wrapped = next(n for n in graph.graph.node if n.name == "block2/if")
    then_branch = next(a.g for a in wrapped.attribute if a.name == "then_branch")
    assert "block2/inserted" in {n.name for n in then_branch.node}
    assert graph_problems(graph) == []


def test_paper_mode_conditional_is_refused_and_masked_works(paper_checkpoint, tmp_path):
    with pytest.raises(CosineGateError, match="F\\(x\\).*--form masked"):
        export_checkpoint(paper_checkpoint, tmp_path / "p.onnx", form="conditional")
    assert not (tmp_path / "p.onnx").exists()
    export_checkpoint(paper_checkpoint, tmp_path / "m.onnx", form="masked", policy="conditional-all", batch=2)
    assert graph_problems(onnx.load(str(tmp_path / "m.onnx"))) == []


def test_bad_export_requests_fail_cleanly_without_a_file(dyn_checkpoint, tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(CosineGateError, match="--batch 1"):
        export_checkpoint(dyn_checkpoint, out, form="conditional", batch=2)
    with pytest.raises(CosineGateError, match="opset"):
        export_checkpoint(dyn_checkpoint, out, opset=11)
    with pytest.raises(CosineGateError, match="not found"):
        export_checkpoint(tmp_path / "missing.pt", out)
    with pytest.raises(CosineGateError, match="skip rates"):
        export_checkpoint(dyn_checkpoint, out, skip_rates=[0.5] * 3)
    with pytest.raises(CosineGateError, match="policy"):
        export_checkpoint(dyn_checkpoint, out, policy="sometimes")
    assert list(tmp_path.iterdir()) == []


def test_manifest_describes_the_file(exported, dyn_checkpoint):
    from cosinegate.artifacts import sha256_file

    path, manifest = exported["auto"]
    assert manifest["onnx_sha256"] == sha256_file(path)
    assert manifest["checkpoint_sha256"] == sha256_file(dyn_checkpoint)
    assert (manifest["form"], manifest["policy"], manifest["opset"], manifest["batch"]) == ("conditional", "auto", 17, 1)
    assert manifest["blocks"][3]["gate"]["rule"] == "logit > 0"
    assert (path.parent / "auto.onnx.json").is_file()


def test_other_opsets_export(dyn_checkpoint, tmp_path):
    manifest = export_checkpoint(dyn_checkpoint, tmp_path / "o20.onnx", opset=20)
    model = onnx.load(str(tmp_path / "o20.onnx"))
    assert manifest["opset"] == 20 and model.opset_import[0].version == 20 and graph_problems(model) == []


def test_foreign_onnx_is_recognized(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "foreign",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "f.onnx"))
    assert not is_toolkit_onnx(onnx.load(str(tmp_path / "f.onnx")))
    with pytest.raises(CosineGateError, match="not produced by this toolkit"):
        load_toolkit_onnx(tmp_path / "f.onnx")


def test_a_dense_checkpoint_exports_in_every_form(dense_checkpoint, tmp_path):
    """A model trained without gates (mode none; here with block 5 removed, as a static baseline) has a constant
    `gates` output; each form keeps it (it was dropped as an unread initializer: the graph failed its check)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    outputs = {}
    for form in ("flat", "conditional", "masked", "compact"):
        manifest = export_checkpoint(dense_checkpoint, tmp_path / f"{form}.onnx", form=form)
        assert manifest["num_if"] == 0 and [b["kind"] for b in manifest["blocks"]].count("dropped") == 1
        outputs[form] = run_ort(tmp_path / f"{form}.onnx", x)
    for form, (logits, gates) in outputs.items():
        np.testing.assert_allclose(logits, outputs["flat"][0], atol=1e-5, err_msg=form)
        assert gates.tolist() == outputs["flat"][1].tolist() and gates[0, 5] == 0.0 and gates[0, 4] == 1.0, form


@pytest.mark.parametrize("text, rates", [("[0, 0.5, 1]", [0.0, 0.5, 1.0]), ('{"skip_rates": [0.25], "top1": 0.9}', [0.25]),
                                         ("[true, 0.5]", None), ("[1.5]", None), ('["0.5"]', None), ("[NaN]", None),
                                         ('{"rates": [0.5]}', None)])
def test_a_skip_rates_file_holds_numbers_in_0_1_or_is_one_line(tmp_path, text, rates):
    from cosinegate.onnx import load_skip_rates

    path = tmp_path / "rates.json"
    path.write_text(text)
    if rates is not None:
        assert load_skip_rates(path) == rates
    else:
        with pytest.raises(CosineGateError, match="holds no skip rates") as info:
            load_skip_rates(path)
        assert "\n" not in str(info.value)
