"""deploy/bench.py: onnxrt and torch backends, JSON keys, --compare-dense, CSV, PNG, engine manifest refusal."""

import csv
import json
import re

import numpy as np
import pytest

from conftest import run_script

import cosinegate.cli.bench as bench  # noqa: E402

from cosinegate.errors import CosineGateError  # noqa: E402
from cosinegate.manifests import EngineManifest  # noqa: E402
from cosinegate.trt.manifest import check_engine_manifest, write_engine_manifest  # noqa: E402

FAST = ["--warmup", "2", "--iterations", "10", "--samples", "8", "--data", "cifar10"]
KEYS = ("latency_ms", "throughput", "skip_rate", "executed_macs", "dense_macs")


@pytest.fixture(scope="module")
def conditional_onnx(tiny_checkpoint, tmp_path_factory):
    from cosinegate.onnx import export_checkpoint

    out = tmp_path_factory.mktemp("bench") / "c.onnx"
    export_checkpoint(tiny_checkpoint, out, "conditional", policy="conditional-all")
    return out


def test_onnxrt_json_csv_png(conditional_onnx, tiny_checkpoint, fake_cifar_root, tmp_path):
    report, table, plot = tmp_path / "r.json", tmp_path / "dev.csv", tmp_path / "h.png"
    argv = ["--onnx", str(conditional_onnx), "--backend", "onnxrt", "--data-root", str(fake_cifar_root), *FAST,
            "--json", str(report), "--csv", str(table), "--plot", str(plot)]
    assert bench.main(argv) == 0
    assert bench.main(argv) == 0
    data = json.loads(report.read_text())
    for key in KEYS:
        assert key in data
    assert set(data["latency_ms"]) >= {"mean", "p50", "p90", "p99"}
    assert 0 <= data["skip_rate"] <= 1 and data["executed_macs"] <= 1.01 * data["dense_macs"]  # gate heads cost a little
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 and rows[0]["backend"] == "onnxrt"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_with_another_header_is_left_alone(tiny_checkpoint, tmp_path):
    table = tmp_path / "other.csv"
    table.write_text("name,score\nx,1\n")
    with pytest.raises(CosineGateError, match="another header"):
        bench.main(["--checkpoint", str(tiny_checkpoint), "--backend", "torch", "--iterations", "2", "--csv", str(table)])
    assert table.read_text() == "name,score\nx,1\n"


def test_torch_backend(tiny_checkpoint, fake_cifar_root, tmp_path):
    report = tmp_path / "t.json"
    assert bench.main(["--checkpoint", str(tiny_checkpoint), "--backend", "torch", "--data-root", str(fake_cifar_root),
                       *FAST, "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    for key in KEYS:
        assert key in data


def test_random_input_is_speed_only(conditional_onnx, tmp_path):
    report = tmp_path / "r.json"
    bench.main(["--onnx", str(conditional_onnx), "--random-input", "--warmup", "1", "--iterations", "5", "--json", str(report)])
    data = json.loads(report.read_text())
    assert "speed only" in data["input"] and "skip_rate" not in data


def test_compare_dense(conditional_onnx, tiny_checkpoint, fake_cifar_root, tmp_path, capsys):
    report = tmp_path / "c.json"
    assert bench.main(["--onnx", str(conditional_onnx), "--checkpoint", str(tiny_checkpoint), "--compare-dense",
                       "--data-root", str(fake_cifar_root), *FAST, "--json", str(report)]) == 0
    c = json.loads(report.read_text())["compare_dense"]
    for key in ("dense_latency_ms", "conditional_latency_ms", "executed_mac_ratio", "ideal_speedup", "realized_speedup",
                "realized_over_ideal", "forced_on_overhead", "ort_native_realized_over_ideal",
                "ort_native_forced_on_overhead"):
        assert key in c
    assert c["ideal_speedup"] == pytest.approx(1 / c["executed_mac_ratio"])
    # the exported dense graph is temporary: the report names its origin and hash, not a path that is gone
    assert str(tiny_checkpoint) in c["dense_onnx"] and len(c["dense_onnx_sha256"]) == 64
    sel = c["selection"]
    assert set(sel["candidates"]) == {"conditional", "pruned", "dense"}
    from cosinegate.bench.candidates import choose

    assert sel["chosen"] == choose(sel["candidates"], sel["max_accuracy_drop"])[0]
    num_if = {name: candidate["num_if"] for name, candidate in sel["candidates"].items()}  # the table's If column
    assert num_if["conditional"] == c["conditional_if_count"] >= 1 and num_if["pruned"] == num_if["dense"] == 0
    assert "realized/ideal" in capsys.readouterr().out


def test_interleaved_timing_takes_turns():
    from cosinegate.bench.backends import time_interleaved

    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def run(self, x):
            calls.append(self.name)
            return {"gates": np.zeros(1)}, None

    walls = time_interleaved({"a": Fake("a"), "b": Fake("b")}, [np.zeros(1)], warmup=2, iterations=6, rounds=3)
    assert calls == ["a", "a", "b", "b"] + ["a", "a", "b", "b"] * 3  # warmup, then 3 rounds of 2 runs each, in turns
    assert {k: len(v) for k, v in walls.items()} == {"a": 6, "b": 6}


def test_forced_on_keeps_ifs(conditional_onnx, tmp_path):
    import onnx

    from cosinegate.bench.graphs import forced_on

    count = forced_on(conditional_onnx, tmp_path / "f.onnx")
    model = onnx.load(str(tmp_path / "f.onnx"))
    assert count == sum(n.op_type == "If" for n in model.graph.node) > 0
    onnx.checker.check_model(model)


def test_bad_backend(conditional_onnx):
    with pytest.raises(CosineGateError, match="unknown backend"):
        bench.main(["--onnx", str(conditional_onnx), "--backend", "tflite"])


def test_an_onnx_graph_given_as_the_engine_is_named_as_one(conditional_onnx):
    with pytest.raises(CosineGateError, match="is an ONNX graph, not a TensorRT engine; time it with --onnx"):
        bench.main(["--engine", str(conditional_onnx), "--random-input"])


def test_engine_manifest_refusal(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"fake engine")
    write_engine_manifest(engine, EngineManifest(trt_version="8.5.2", compute_capability="8.7"))
    assert check_engine_manifest(engine, "8.5.2.2", "8.7").trt_version == "8.5.2"
    with pytest.raises(CosineGateError, match="built with TensorRT 8.5.2, this machine has TensorRT 10.3.0"):
        check_engine_manifest(engine, "10.3.0", "8.7")
    with pytest.raises(CosineGateError, match="compute capability 8.7, this GPU is 7.2"):
        check_engine_manifest(engine, "8.5.2", (7, 2))
    (tmp_path / "m.engine.json").unlink()
    with pytest.raises(CosineGateError, match="no manifest"):
        check_engine_manifest(engine, "8.5.2", "8.7")
    with pytest.raises(CosineGateError, match="absent.engine not found; check the path"):  # not "has no manifest"
        check_engine_manifest(tmp_path / "absent.engine", "8.5.2", "8.7")


def test_power_sums_the_rails_the_engine_manifest_records(conditional_onnx, tmp_path, monkeypatch, capsys):
    """bench --engine --power: the rails are the engine manifest's (a local profile's), checked before anything is
    timed, and the summary prints the power line. Stand-ins: ONNX Runtime runs the graph in TensorRT's place, and the
    sampler holds two recorded Orin Nano tegrastats lines (the plumbing only, never a measurement)."""
    import cosinegate.bench.backends as backends
    import cosinegate.bench.tegrastats as tegrastats
    from cosinegate.pipeline.engine import onnx_meta
    from cosinegate.trt.manifest import read_engine_manifest
    from test_tegrastats import ORIN_NANO_JP6, ORIN_NANO_JP6_BUSY

    entered = []

    class StandInTrt(backends.OnnxrtBackend):
        def __init__(self, engine):
            super().__init__(conditional_onnx)
            self.manifest = read_engine_manifest(engine)

    class RecordedTegrastats(tegrastats.TegrastatsSampler):
        def __enter__(self):
            entered.append(True)
            self.lines = [ORIN_NANO_JP6, ORIN_NANO_JP6_BUSY]
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(backends, "TrtBackend", StandInTrt)
    monkeypatch.setattr(tegrastats, "TegrastatsSampler", RecordedTegrastats)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"stand-in")

    def manifest(rails):
        write_engine_manifest(engine, EngineManifest(trt_version="8.5.2", compute_capability="8.7", target="my-nano",
                                                     onnx_metadata=onnx_meta(conditional_onnx), power_rails=rails))

    manifest({"total": ["VDD_IN"], "detail": ["VDD_SOC", "VDD_CPU_GPU_CV"]})
    args = ["--engine", str(engine), "--power", "--random-input", "--warmup", "1", "--iterations", "5"]
    assert bench.main([*args, "--json", str(tmp_path / "r.json")]) == 0
    power = json.loads((tmp_path / "r.json").read_text())["power"]
    assert list(power["rails_mean_mw"]) == ["VDD_IN"] and sorted(power["detail_mean_mw"]) == ["VDD_CPU_GPU_CV", "VDD_SOC"]
    line = next(text for text in capsys.readouterr().out.splitlines() if text.startswith("power: "))
    assert f"{power['total_mean_w']:.2f} W (VDD_IN, 2 tegrastats samples)" in line and "VDD_SOC" in line, line
    manifest({"total": [], "detail": []})
    entered.clear()
    with pytest.raises(CosineGateError, match="names no power rails to sum"):
        bench.main(args)
    assert not entered  # refused before the sampler started and anything was timed


def test_trt_backend_refuses_without_tensorrt(tmp_path, monkeypatch):
    import cosinegate.trtversion as versions

    monkeypatch.setattr(versions, "installed_tensorrt", lambda: None)
    (tmp_path / "m.engine").write_bytes(b"not read: TensorRT is missing")
    with pytest.raises(CosineGateError, match="TensorRT is not installed"):
        bench.main(["--engine", str(tmp_path / "m.engine"), "--random-input"])  # images given: TensorRT is next


def test_compare_dense_without_an_ort_native_graph(conditional_onnx, tiny_checkpoint, fake_cifar_root, tmp_path, capsys, monkeypatch):
    """When ONNX Runtime's optimized graph cannot be split into Ifs (e.g. ResNet-18, whose projection-shortcut
    convolutions absorb the add), the comparison still reports the portable graphs and says why."""
    from cosinegate.bench import compare

    def refuse(*args):
        raise CosineGateError("cannot be split into one If per dynamic block")

    monkeypatch.setattr(compare, "ort_native_graphs", refuse)
    report = tmp_path / "c.json"
    assert bench.main(["--onnx", str(conditional_onnx), "--checkpoint", str(tiny_checkpoint), "--compare-dense",
                       "--data-root", str(fake_cifar_root), *FAST, "--json", str(report)]) == 0
    c = json.loads(report.read_text())["compare_dense"]
    assert "realized_over_ideal" in c and "ort_native_realized_over_ideal" not in c
    assert "ORT-native conditional graph not available: cannot be split" in capsys.readouterr().out


def test_dense_baseline_is_the_backbone_without_gates(tiny_checkpoint, conditional_onnx, tmp_path):
    """The dense baseline computes no gate head and is counted without gate MACs; a graph with gate heads is refused."""
    import onnx
    import onnxruntime as ort

    from cosinegate.macs import mac_table
    from cosinegate.onnx import export_checkpoint

    dense, flat = tmp_path / "dense.onnx", tmp_path / "flat.onnx"
    export_checkpoint(tiny_checkpoint, dense, policy="dense")
    export_checkpoint(tiny_checkpoint, flat, "flat")
    assert not [n.name for n in onnx.load(str(dense)).graph.node if "/gate/" in n.name]
    assert [n.name for n in onnx.load(str(flat)).graph.node if "/gate/" in n.name]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0] for p in (dense, flat)}
    np.testing.assert_allclose(run[dense], run[flat], atol=1e-5)  # same weights: the flat twin runs every block too
    report = tmp_path / "c.json"
    assert bench.main(["--onnx", str(conditional_onnx), "--checkpoint", str(tiny_checkpoint), "--compare-dense",
                       *FAST, "--rounds", "1", "--json", str(report)]) == 0
    c = json.loads(report.read_text())["compare_dense"]
    assert c["dense_macs"] == mac_table("resnet20", "none").dense < c["flat_twin_macs"]
    assert c["ideal_speedup"] == pytest.approx(c["dense_macs"] / c["executed_macs"]) and "flat_twin_latency_ms" in c
    with pytest.raises(CosineGateError, match="not gate-free.*--policy dense"):
        bench.main(["--onnx", str(conditional_onnx), "--dense-onnx", str(flat), "--compare-dense", *FAST])


def test_latency_plot_range_is_outlier_proof(tmp_path):
    from cosinegate.bench.report import latency_range, plot_histogram

    rng = np.random.default_rng(0)
    series = {"dense (no gates)": list(rng.normal(0.7, 0.03, 300)) + [40.0] * 10, "conditional": list(rng.normal(0.8, 0.03, 300))}
    low, high = latency_range(series)
    assert 0.5 < low < 0.7 and 0.85 < high < 2.5  # ten 40 ms runs (3%) do not stretch the axis
    plot_histogram(tmp_path / "l.png", series, "onnxrt, 1 thread(s)", {"conditional": 0.875}, 1.5)
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"


def test_mac_columns_count_what_each_graph_executes_with_a_dropped_block(tiny_checkpoint, fake_cifar_root, tmp_path,
                                                                         capsys):
    """A dropped block (only its shortcut in every graph) costs nothing in the dense, flat-twin and conditional MACs,
    counted as evaluation counts them (model_mac_table); the conditional graph computes no gate head for the blocks
    its policy fixed, so it costs less than the model in PyTorch."""
    from cosinegate.macs import mac_table, model_mac_table
    from cosinegate.models import build_model
    from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(tiny_checkpoint)
    state["config"]["model"]["drop_blocks"] = [3]
    model = build_model(state["config"]["model"], state["num_classes"])
    state["model"] = {k: v for k, v in state["model"].items() if k in model.state_dict()}
    model.load_state_dict(state["model"])
    ckpt = tmp_path / "drop3.pt"
    save_checkpoint(ckpt, **{k: v for k, v in state.items() if k != "format"})
    table = model_mac_table(model)
    reports = {name: tmp_path / f"{name}.json" for name in ("onnx", "torch")}
    common = ["--checkpoint", str(ckpt), "--data-root", str(fake_cifar_root), *FAST, "--rounds", "1"]
    assert bench.main([*common, "--backend", "onnxrt", "--compare-dense", "--json", str(reports["onnx"])]) == 0
    assert bench.main([*common, "--backend", "torch", "--json", str(reports["torch"])]) == 0
    data = {name: json.loads(path.read_text()) for name, path in reports.items()}
    c = data["onnx"]["compare_dense"]
    assert c["dense_macs"] == table.dense < mac_table("resnet20", "none").dense
    assert c["flat_twin_macs"] == table.executed([True] * len(table.blocks))
    assert data["onnx"]["executed_macs"] == pytest.approx(c["executed_macs"])
    assert "(0 If)" in capsys.readouterr().out  # every block fixed: no gate head in the graph, each one in PyTorch
    gate_heads = sum(b.gate for b in table.blocks)
    assert data["torch"]["executed_macs"] - data["onnx"]["executed_macs"] == pytest.approx(gate_heads) and gate_heads > 0
    assert data["onnx"]["dense_macs"] == data["torch"]["dense_macs"] == table.dense


@pytest.mark.parametrize("key, value, message", [
    ("image_size", '"abc"', "image_size = 'abc' is not an input size"),
    ("image_size", "99999", "image_size = 99999 is not an input size"),
    ("image_size", "64", "image_size = 64 disagrees with the graph's input 32x32"),
    ("normalization", '{"mean": "x"}', "normalization = .* has no 3 means and 3 stds"),
    ("normalization", '{"mean": [0, 0, 0], "std": [0, 0, 0]}', "3 finite positive stds"),
    ("classes", "5", "classes = '5' is not a list of class names"),
    ("gate_hidden", "0", "gate_hidden = 0 is not a gate's hidden units"),
    ("classes", '["cat\\ndog", "b"]', "control character"),
])
def test_crafted_graph_metadata_is_refused_in_one_line(conditional_onnx, tmp_path, key, value, message):
    """Reviewer finding: metadata edited by hand gave tracebacks (ValueError, KeyError, TypeError) or absurd MACs."""
    import onnx

    model = onnx.load(str(conditional_onnx))
    next(p for p in model.metadata_props if p.key == f"cosinegate.{key}").value = value
    onnx.save(model, str(tmp_path / "m.onnx"))
    done = run_script("deploy/bench.py", "--onnx", tmp_path / "m.onnx", "--random-input", "--iterations", "2")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-800:]
    assert re.search(message, done.stderr) and "re-export it with cosinegate export" in done.stderr, done.stderr


def test_compare_dense_forces_nothing_on_a_graph_without_an_if(dense_checkpoint, fake_cifar_root, tmp_path, capsys):
    """A model without gates has no If to force on, in the portable or the ORT-native graph: no forced-on rows, no
    overhead figures (they would time the graph itself)."""
    report = tmp_path / "c.json"
    assert bench.main(["--checkpoint", str(dense_checkpoint), "--backend", "onnxrt", "--compare-dense", "--data-root",
                       str(fake_cifar_root), *FAST, "--rounds", "1", "--json", str(report)]) == 0
    c = json.loads(report.read_text())["compare_dense"]
    assert c["conditional_if_count"] == 0 and c["forced_on_latency_ms"] is None and c["forced_on_overhead"] is None
    assert c["ort_native_forced_on_latency_ms"] is None and c["ort_native_forced_on_overhead"] is None
    out = capsys.readouterr().out
    assert out.count("forced-on overhead n/a (no If to force)") == 2 and " forced on " not in out


def test_bench_without_a_model_names_the_three_sources(capsys):
    from scripts_in_process import run

    code, _, err = run("deploy/bench.py")
    assert code == 2 and err.strip() == "error: bench needs a model: --checkpoint CKPT, --onnx FILE or --engine FILE."
    code, _, err = run("deploy/bench.py", "--backend", "torch")
    assert code == 2 and err.strip() == "error: --backend torch needs --checkpoint CKPT."
