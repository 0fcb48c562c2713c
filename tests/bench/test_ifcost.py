"""bench.py --if-cost: If chains, per-block cost rows, and --policy auto with a cost table keeping blocks plain."""

import json

import numpy as np
import pytest

import cosinegate.cli.bench as bench  # noqa: E402
import cosinegate.cli.export_onnx as export_onnx  # noqa: E402

from cosinegate.errors import CosineGateError  # noqa: E402

FAST = ["--warmup", "2", "--iterations", "12", "--rounds", "2"]


@pytest.fixture(scope="module")
def cost_table(dyn_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("ifcost") / "table.json"
    assert bench.main(["--if-cost", "--checkpoint", str(dyn_checkpoint), *FAST, "--json", str(out)]) == 0
    return out


@pytest.mark.parametrize("count", [0, 3])
def test_if_chain_is_identity_through_count_ifs(count):
    import onnx

    from cosinegate.bench.backends import OnnxrtGraph
    from cosinegate.bench.ifcost import trivial_if_chain

    model = trivial_if_chain((3, 8, 8), count, 17)
    onnx.checker.check_model(model, full_check=True)
    assert sum(n.op_type == "If" for n in model.graph.node) == count
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8), dtype=np.float32)
    (y,) = OnnxrtGraph(model).run(x)[0].values()
    np.testing.assert_array_equal(y, x)  # every condition true: the then-branch (Identity) ran


def test_cost_per_if_is_the_slope():
    from cosinegate.bench.ifcost import break_even_us, cost_per_if

    assert cost_per_if([0, 1, 3, 9], [100.0, 112.0, 136.0, 208.0]) == pytest.approx(12.0)
    assert break_even_us(12.0, 0.25) == pytest.approx(48.0)
    assert break_even_us(12.0, 0.0) == float("inf")


def test_block_subgraph_matches_the_flat_twin(dyn_checkpoint):
    from cosinegate.bench.backends import OnnxrtGraph
    from cosinegate.bench.graphs import block_subgraph, forced_on_model
    from cosinegate.bench.ifcost import model_graphs

    flat, cond_all, _, _ = model_graphs(dyn_checkpoint)
    plain, wrapped = block_subgraph(flat, 3), block_subgraph(forced_on_model(cond_all), 3)
    assert sum(n.op_type == "If" for n in wrapped.graph.node) == 1 and not any(n.op_type == "If" for n in plain.graph.node)
    dims = [d.dim_value for d in plain.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(2).standard_normal(dims, dtype=np.float32)
    (a,) = OnnxrtGraph(plain).run(x)[0].values()
    (out,) = OnnxrtGraph(wrapped).run(x)[0].values()
    np.testing.assert_allclose(out, a, atol=1e-5)  # the gate forced on: the If ran the same block


def test_if_cost_table(cost_table, capsys):
    t = json.loads(cost_table.read_text())
    assert t["if_counts"] == [0, 1, 3, 9] and len(t["chain_latency_us"]) == 4 and t["input_shape"] == [1, 3, 32, 32]
    assert t["chain_latency_us"][3] > t["chain_latency_us"][0]  # nine conditionals cost something
    assert t["if_form"] == "runtime-native"  # on onnxrt the blocks are priced in the ORT-native graph that runtime deploys
    gated = [b for b in t["blocks"]]
    assert len(gated) == t["num_blocks"] == 9 and all(b["latency_us"] > 0 for b in gated)
    assert [b["kind"] for b in gated][:2] == ["always_run", "always_skipped"]
    assert [b["verdict"] for b in gated][:2] == ["plain (always run)", "removed (always skipped)"]
    for b in gated[2:]:
        assert b["verdict"] == ("conditional" if b["skip_rate"] * b["latency_us"] > b["if_cost_us"] else "plain")
    bench.print_if_cost(t)
    out = capsys.readouterr().out
    assert "cost per conditional" in out and "removed (always skipped)" in out and "runtime's own conditional graph" in out


def write_table(source, path, if_cost_us):
    t = json.loads(source.read_text())
    for b in t["blocks"]:
        b["latency_us"], b["if_cost_us"] = 100.0, if_cost_us
    path.write_text(json.dumps(t))
    return path


def test_policy_auto_with_cost_table(dyn_checkpoint, cost_table, tmp_path):
    import onnx

    cheap = write_table(cost_table, tmp_path / "cheap.json", 1.0)  # skip ~0.5 x 100 us > 1 us: conditional pays
    dear = write_table(cost_table, tmp_path / "dear.json", 80.0)  # 0.5 x 100 us < 80 us: keep plain
    for table, expect_if in ((cheap, True), (dear, False)):
        out = tmp_path / f"{table.stem}.onnx"
        export_onnx.main(["--checkpoint", str(dyn_checkpoint), "--out", str(out), "--if-cost-table", str(table)])
        manifest = json.loads((tmp_path / f"{table.stem}.onnx.json").read_text())
        n_if = sum(n.op_type == "If" for n in onnx.load(str(out)).graph.node)
        dynamic = [b["block"] for b in manifest["blocks"] if b["kind"] == "dynamic"]
        if expect_if:
            assert n_if == len(dynamic) == 7 and manifest["if_cost"]["plain_by_cost"] == []
        else:
            assert n_if == 0 and manifest["if_cost"]["plain_by_cost"] == list(range(2, 9))


def test_cost_table_of_another_model_is_refused(dyn_checkpoint, cost_table, tmp_path):
    t = json.loads(cost_table.read_text())
    t["backbone"] = "resnet56"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(t))
    with pytest.raises(CosineGateError, match="measure this model"):
        export_onnx.main(["--checkpoint", str(dyn_checkpoint), "--out", str(tmp_path / "m.onnx"), "--if-cost-table", str(other)])
    (tmp_path / "bad.json").write_text(json.dumps({"format": "cosinegate-if-cost-v1", "blocks": [{"block": 0}]}))
    with pytest.raises(CosineGateError, match="malformed block row"):
        export_onnx.main(["--checkpoint", str(dyn_checkpoint), "--out", str(tmp_path / "m.onnx"), "--if-cost-table",
                          str(tmp_path / "bad.json")])
    assert not (tmp_path / "m.onnx").exists()


def test_trt_backend_says_what_is_missing(dyn_checkpoint):
    from cosinegate.trtversion import installed_tensorrt

    if installed_tensorrt() is not None:
        pytest.skip("TensorRT is installed here: the device run measures it")
    with pytest.raises(CosineGateError, match="TensorRT is not installed here"):
        bench.main(["--if-cost", "--backend", "trt", "--checkpoint", str(dyn_checkpoint), *FAST])


def test_bench_report_puts_block_latency_next_to_break_even(dyn_checkpoint, cost_table, fake_cifar_root, tmp_path):
    from cosinegate.onnx import export_checkpoint

    graph, report = tmp_path / "c.onnx", tmp_path / "r.json"
    export_checkpoint(dyn_checkpoint, graph, "conditional")
    assert bench.main(["--onnx", str(graph), "--if-cost-table", str(cost_table), "--data", "cifar10", "--data-root",
                       str(fake_cifar_root), "--samples", "24", *FAST, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    rows = {r["block"]: r for r in data["if_cost_blocks"]}
    table = {r["block"]: r for r in json.loads(cost_table.read_text())["blocks"]}
    for i, row in rows.items():
        assert row["skip_rate"] == pytest.approx(data["skip_rate_per_block"][i])  # measured in this run
        assert row["latency_us"] == table[i]["latency_us"]
        if row["kind"] == "dynamic":
            assert row["break_even_us"] == pytest.approx(row["if_cost_us"] / row["skip_rate"])
    assert rows[1]["verdict"] == "removed (always skipped)" and rows[2]["kind"] == "dynamic"


def test_native_if_graphs_gate_one_block(dyn_checkpoint):
    from cosinegate.bench.backends import OnnxrtGraph
    from cosinegate.bench.graphs import forced_on_model
    from cosinegate.bench.ifcost import model_graphs
    from cosinegate.pipeline.bench import native_if_graphs

    flat, _, _, _ = model_graphs(dyn_checkpoint)
    base, wrapped = native_if_graphs(flat, 1)(4)
    assert not any(n.op_type == "If" for n in base.graph.node)
    assert [n.name for n in wrapped.graph.node if n.op_type == "If"] == ["block4/ortif"]  # block 4 alone, in its native If
    x = np.random.default_rng(4).standard_normal((1, 3, 32, 32), dtype=np.float32)
    plain, forced = OnnxrtGraph(base).run(x)[0], OnnxrtGraph(forced_on_model(wrapped)).run(x)[0]
    np.testing.assert_allclose(forced["logits"], plain["logits"], atol=1e-4)  # gate forced on: the same network


@pytest.fixture(scope="module")
def flat_with_manifest(dyn_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("flat") / "model.flat.onnx"
    assert export_onnx.main(["--checkpoint", str(dyn_checkpoint), "--form", "flat", "--out", str(out)]) in (0, None)
    return out


@pytest.mark.parametrize("change, refused", [
    (lambda m: m.update(blocks=5), True),
    (lambda m: m["blocks"][0].update(skip_rate=float("nan")), True),
    (lambda m: m["blocks"][1].update(skip_rate=1e300), True),
    (lambda m: m["blocks"][2].update(skip_rate=True), True),
    (lambda m: m["blocks"][3].pop("skip_rate"), True),
    (lambda m: m.update(onnx_sha256="0" * 64), False),  # another graph's manifest: not this graph's rates
], ids=["blocks-not-a-list", "nan", "huge", "bool", "one-missing", "another-graph"])
def test_if_cost_from_a_flat_graph_refuses_bad_skip_rates_in_its_manifest(flat_with_manifest, tmp_path, change, refused):
    from cosinegate.onnx import manifest_skip_rates

    graph = tmp_path / "model.flat.onnx"
    graph.write_bytes(flat_with_manifest.read_bytes())
    manifest = json.loads(open(f"{flat_with_manifest}.json").read())
    assert manifest_skip_rates(flat_with_manifest) == [b["skip_rate"] for b in manifest["blocks"]]
    change(manifest)
    (tmp_path / "model.flat.onnx.json").write_text(json.dumps(manifest))
    if not refused:
        assert manifest_skip_rates(graph) is None
        return
    with pytest.raises(CosineGateError, match="skip rates are not numbers in \\[0, 1\\], one per block"):
        manifest_skip_rates(graph)
    with pytest.raises(CosineGateError, match="skip rates are not numbers"):  # before anything is timed or written
        bench.main(["--if-cost", "--onnx", str(graph), *FAST, "--json", str(tmp_path / "ic.json")])
    assert not (tmp_path / "ic.json").exists()
