"""The ONNX Runtime runner: a path, bytes or ModelProto in; outputs by name; a context manager; Polygraphy's view."""

import subprocess
import sys

import numpy as np
import pytest

from cosinegate.bench.ifcost import trivial_if_chain
from cosinegate.graphmeta import set_metadata
from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner

X = np.random.default_rng(0).standard_normal((1, 3, 4, 4), dtype=np.float32)


@pytest.fixture
def chain():
    return trivial_if_chain((3, 4, 4), 2, 17)  # two If nodes, each taking its Identity branch


@pytest.mark.parametrize("source", ["path", "bytes", "proto"])
def test_outputs_by_name_from_every_source(source, chain, tmp_path):
    import onnx

    onnx.save(chain, str(tmp_path / "chain.onnx"))
    model = {"path": tmp_path / "chain.onnx", "bytes": chain.SerializeToString(), "proto": chain}[source]
    with OnnxRuntimeRunner(model) as runner:
        assert runner.is_active and runner.input_name == "input"
        assert runner.input_metadata() == {"input": (np.float32, (1, 3, 4, 4))}
        outputs = runner.infer({"input": X})
        assert list(outputs) == ["output"] and runner.inference_time > 0
    np.testing.assert_array_equal(outputs["output"], X)
    assert not runner.is_active and runner.session is None and runner.gpu_ms is None


def test_infer_needs_an_active_runner(chain):
    with pytest.raises(RuntimeError, match="not active"):
        OnnxRuntimeRunner(chain).infer({"input": X})


def test_options_reach_the_session(chain):
    import onnxruntime as ort

    with OnnxRuntimeRunner(chain, threads=2, optimization="basic", spinning=False, log_severity=3) as runner:
        options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1 and options.log_severity_level == 3
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ValueError, match="optimization"):
        OnnxRuntimeRunner(chain, optimization="extended")


def test_a_graph_optimized_for_onnxruntime_loads_unoptimized(chain):
    import onnxruntime as ort

    set_metadata(chain, runtime="onnxruntime-native")
    with OnnxRuntimeRunner(chain, optimization="all") as runner:
        level = runner.session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def test_polygraphy_comparator_runs_it_beside_polygraphys_own_runner(chain):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator

    feeds = [{"input": X}, {"input": -X}]
    theirs = OnnxrtRunner(SessionFromOnnx(chain.SerializeToString(), providers=["cpu"]), name="polygraphy")
    results = Comparator.run([OnnxRuntimeRunner(chain, name="ours").polygraphy(), theirs], data_loader=feeds)
    assert [name for name, _ in results] == ["ours", "polygraphy"]
    assert bool(Comparator.compare_accuracy(results))
    np.testing.assert_array_equal(results[0][1][1]["output"], -X)


def test_importing_it_needs_neither_torch_nor_onnxruntime():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None\n"
            "from cosinegate.runtime.onnxruntime_backend import OnnxRuntimeRunner\n"
            "from cosinegate.bench.ifcost import trivial_if_chain\n"
            "runner = OnnxRuntimeRunner(trivial_if_chain((3, 4, 4), 1, 17))\n"
            "try:\n    runner.activate()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CosineGateError") and "pip install onnxruntime (or '.[deploy]'" in done.stdout, done.stdout
