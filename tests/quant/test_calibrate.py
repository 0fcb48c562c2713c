"""INT8 calibration: calibration set, batch-invariant ranges, Q/DQ placement, conditional graph, cache, real-image agreement."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import conftest
from conftest import REAL_CIFAR, requires_real_cifar, tiny_config
from cosinegate.errors import CosineGateError
from cosinegate.quant import cache as cache_mod
from cosinegate.quant import calibrate as C
from cosinegate.quant.calibset import ids_sha256, select
from cosinegate.quant.names import CACHE_NAME, COMPACT_QDQ, CONDITIONAL_QDQ, FLAT_QDQ, MASKED_QDQ

ROOT = Path(__file__).resolve().parents[2]
TRAINED = ROOT / "train/results/cifar10-campaign-cpu/runs/rates-r0.75-s0/last.pt"  # the CPU campaign's leader


@pytest.fixture(scope="module")
def train_split(fake_cifar_root):
    from cosinegate.data import load_dataset

    return load_dataset("cifar10", fake_cifar_root)[0]


@pytest.fixture(scope="module")
def calib_set(train_split, fake_cifar_root):
    return select(train_split, 40, 0, "cifar10", str(fake_cifar_root))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, fake_cifar_root):
    """An untrained predictive ResNet-20 checkpoint (instant; training is not what is tested here)."""
    return paper_checkpoint(tmp_path_factory.mktemp("ckpt") / "predictive.pt", fake_cifar_root, "predictive")


@pytest.fixture(scope="module")
def built(tiny_checkpoint, calib_set):
    """minmax calibration of the tiny checkpoint with every gated block dynamic (one If per gated block)."""
    return C.calibrate(tiny_checkpoint, calib_set, "minmax", 16, trt_version="8.5", forms=("flat", "conditional"),
                       policy="conditional-all")


def paper_checkpoint(path, data_root, mode="paper"):
    from cosinegate.models import build_model
    from cosinegate.training.checkpoint import save_checkpoint

    config = tiny_config(data_root, mode=mode)
    import torch

    torch.manual_seed(0)
    model = build_model(config["model"], num_classes=10)
    save_checkpoint(path, config=config, num_classes=10, model=model.state_dict())
    return path


def _nodes(model):
    return {n.name: n for n in model.graph.node}


def _inits(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _producers(graph):
    return {o: n for n in graph.node for o in n.output}


# calibration set --------------------------------------------------------------


def test_calibration_set_is_seeded_stratified_and_hashed(train_split):
    a, b = select(train_split, 40, 3), select(train_split, 40, 3)
    assert a.ids == b.ids and a.ids_sha256 == ids_sha256(a.ids)
    assert select(train_split, 40, 4).ids != a.ids
    assert np.bincount(a.labels, minlength=10).tolist() == [4] * 10
    assert all(not i.startswith("test") for i in a.ids)


def test_calibration_set_refuses_too_few_and_wrong_shape(train_split):
    from cosinegate.data.imageset import ImageSet

    with pytest.raises(CosineGateError, match="fewer than the 10 classes"):
        select(train_split, 9)
    bad = ImageSet(np.zeros((20, 64, 48, 3), np.uint8), np.arange(20) % 10, [str(i) for i in range(20)], list("abcdefghij"))
    with pytest.raises(CosineGateError, match="expected uint8 square RGB images"):
        select(bad, 10)


def test_ranges_refuse_images_of_another_size(tiny_checkpoint):
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(tiny_checkpoint)
    with pytest.raises(CosineGateError, match="expected uint8 32x32 RGB images"):
        C.collect_ranges(model, np.zeros((4, 64, 64, 3), np.uint8), "minmax")


# ranges -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_ranges_invariant_to_batch_size_and_order(tiny_checkpoint, calib_set, method):
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(tiny_checkpoint)
    tensors = C.quantized_tensors(C.flat_twin(model, 1))
    one = C.collect_ranges(model, calib_set.images, method, 40, tensors=tensors, num_bins=512)
    seven = C.collect_ranges(model, calib_set.images, method, 7, tensors=tensors, num_bins=512)
    shuffled = C.collect_ranges(model, calib_set.images, method, 16, tensors=tensors, num_bins=512,
                                order=np.random.default_rng(1).permutation(len(calib_set)))
    assert set(one) == set(tensors)
    for other in (seven, shuffled):
        for name in tensors:
            # numerical noise only: ORT may sum a conv in another order per batch size
            assert other[name] == pytest.approx(one[name], rel=1e-5), name


def test_unknown_method_refused(tiny_checkpoint, calib_set):
    with pytest.raises(CosineGateError, match="unknown calibration method 'mse'"):
        C.calibrate(tiny_checkpoint, calib_set, "mse")


# Q/DQ placement ---------------------------------------------------------------


def test_flat_qdq_placement_rules(built):
    model = onnx.load_from_string(built.files[FLAT_QDQ])
    graph, inits, made_by = model.graph, _inits(model), _producers(model.graph)
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:  # symmetric INT8: zero points are int8 zeros
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any()
        assert not C.is_gate_node(node.name)
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm") and not C.is_gate_node(node.name):
            act, weight = made_by[node.input[0]], made_by[node.input[1]]
            assert act.op_type == "DequantizeLinear" and inits[act.input[1]].ndim == 0  # per-tensor activation
            assert weight.op_type == "DequantizeLinear"
            axis = {a.name: a.i for a in weight.attribute}["axis"]
            w = inits[made_by[weight.input[0]].input[0]]
            assert axis == 0 and inits[weight.input[1]].shape == (w.shape[0],)  # per output channel
            assert np.allclose(inits[weight.input[1]], np.abs(w).reshape(w.shape[0], -1).max(1) / 127, rtol=1e-6)
        if C._is_block_add(node):
            assert made_by[node.input[0]].op_type == "DequantizeLinear"  # the shortcut ("residual") input
        if C.is_gate_node(node.name):  # the gate head reads FP32 only
            for name in node.input:
                assert name not in made_by or made_by[name].op_type not in ("QuantizeLinear", "DequantizeLinear"), node.name
    # the same rules from the export's names, not calibrate's predicates: every block's gate head is there (FP32,
    # above), and each block add's shortcut input is a Q/DQ of the block's input or of its shortcut branch
    from cosinegate.onnx.export import block_names

    blocks = sorted({n.name.split("/")[0] for n in graph.node if n.name.startswith("block") and "/gate/" in n.name})
    assert blocks == sorted(f"block{i}" for i in range(9))
    for i in range(9):
        add = next(n for n in graph.node if n.name == block_names(i)["add"])
        quantized = made_by[made_by[add.input[0]].input[0]]
        assert quantized.op_type == "QuantizeLinear" and quantized.input[0] in (block_names(i)["input"], f"block{i}/shortcut")


def test_activation_scales_come_from_amax(built):
    model = onnx.load_from_string(built.files[FLAT_QDQ])
    inits, amax = _inits(model), built.manifest["amax"]
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.name.endswith(("/input_q_QuantizeLinear", "/shortcut_q_QuantizeLinear")):
            assert float(inits[node.input[1]]) == pytest.approx(amax[node.input[0]] / 127, rel=1e-6)


def test_conditional_qdq_lives_in_then_branches(built):
    model = onnx.load_from_string(built.files[CONDITIONAL_QDQ])
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    assert ifs
    top = [n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for node in ifs:
        block = node.name.split("/")[0]
        branches = {a.name: a.g for a in node.attribute}
        inside = [n.name for n in branches["then_branch"].node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert {f"{block}/conv1/input_q_QuantizeLinear", f"{block}/conv2/weight_q_DequantizeLinear",
                f"{block}/add/shortcut_q_DequantizeLinear"} <= set(inside)
        assert not [n for n in branches["else_branch"].node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert not [name for name in top if name.startswith(f"{block}/conv") or name.startswith(f"{block}/add")]


def test_paper_mode_conditional_refused(tmp_path, fake_cifar_root, calib_set):
    path = paper_checkpoint(tmp_path / "paper.pt", fake_cifar_root)
    with pytest.raises(CosineGateError, match="--forms flat,masked"):
        C.calibrate(path, calib_set, "minmax")
    result = C.calibrate(path, calib_set, "minmax", forms=("flat", "masked"), policy="conditional-all")
    assert set(result.files) == {FLAT_QDQ, MASKED_QDQ, CACHE_NAME}


def test_compact_qdq_graph_runs_each_sample_as_the_conditional_qdq_graph(tiny_checkpoint, calib_set, fake_cifar):
    """Q/DQ insertion works on the compact form: calibrate writes it, and at batch 8 with half the images skipping
    each block it gives every sample the decisions and logits of the conditional Q/DQ graph run alone (the skip
    path reads the tensor in front of the shortcut's Q/DQ, as the If else-branch does)."""
    from cosinegate.bench.gate_patterns import force_skip_fraction
    from cosinegate.onnx import compact, conditionalize
    from cosinegate.quant.calibset import to_input
    from cosinegate.training.checkpoint import model_from_checkpoint

    result = C.calibrate(tiny_checkpoint, calib_set, "minmax", 16, trt_version="8.5", forms=("flat", "compact"),
                         policy="conditional-all")
    written = onnx.load_from_string(result.files[COMPACT_QDQ])
    assert {"NonZero", "ScatterND", "QuantizeLinear"} <= {n.op_type for n in written.graph.node}
    with pytest.raises(CosineGateError, match="TensorRT 8.4.3.*--form masked"):
        C.calibrate(tiny_checkpoint, calib_set, "minmax", 16, trt_version="8.4.3", forms=("flat", "compact"))
    images = fake_cifar[1]["test"][0][:8]
    model = force_skip_fraction(model_from_checkpoint(tiny_checkpoint)[0], images, 0.5)
    amax = result.manifest["amax"]
    batched = C.onnxrt_runner(compact(C.quantize_flat(C.flat_twin(model, 8), amax), "conditional-all"))
    alone = C.onnxrt_runner(conditionalize(C.quantize_flat(C.flat_twin(model, 1), amax), "conditional-all"))
    logits, gates = batched.infer({"input": to_input(images)}).values()
    assert 0.25 < gates.mean() < 0.75  # mixed: about half of the images skip each block (Q/DQ moves a few)
    for i in range(len(images)):
        one_logits, one_gates = alone.infer({"input": to_input(images[i : i + 1])}).values()
        np.testing.assert_array_equal(gates[i : i + 1], one_gates)
        np.testing.assert_allclose(logits[i : i + 1], one_logits, atol=1e-4, rtol=1e-3)


# cache ------------------------------------------------------------------------


def test_cache_round_trip_and_header(built, tmp_path):
    C.write_outputs(built, tmp_path / "out")
    header, scales = cache_mod.parse_cache(tmp_path / "out" / CACHE_NAME)
    assert header == "TRT-8502-MinMaxCalibration"
    amax = built.manifest["amax"]
    assert set(scales) == set(amax) and set(built.manifest["quantized_tensors"]) <= set(scales)
    assert not [name for name in scales if "/gate/" in name]
    for name, scale in scales.items():
        assert scale == float(np.float32(amax[name] / 127)), name
    back = C.amax_from_cache(tmp_path / "out" / CACHE_NAME, "8.5", "minmax")
    for name in amax:
        assert back[name] == pytest.approx(amax[name], rel=1e-6)


@pytest.mark.parametrize("method, trt, header", [
    ("entropy", "8.5", "TRT-8502-EntropyCalibration2"), ("minmax", "10.3", "TRT-100300-MinMaxCalibration"),
    ("percentile", "10.3", "TRT-100300-MinMaxCalibration"), ("entropy", "10.3.0", "TRT-100300-EntropyCalibration2"),
])
def test_header_by_method_and_version(method, trt, header):
    assert cache_mod.format_header(C.resolve_trt_version(trt), cache_mod.algorithm_for(method, C.resolve_trt_version(trt))) == header


def test_mismatched_cache_refused(built, tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(built.files[CACHE_NAME])  # TRT 8.5.2 MinMax
    with pytest.raises(CosineGateError, match="built for TensorRT 8.5.2 with MinMaxCalibration.*10.3.0"):
        C.amax_from_cache(path, "10.3", "minmax")
    with pytest.raises(CosineGateError, match="EntropyCalibration2"):
        C.amax_from_cache(path, "8.5", "entropy")


def test_reusing_a_matching_cache_gives_the_same_graph(built, tiny_checkpoint, tmp_path):
    path = tmp_path / "c.cache"
    path.write_bytes(built.files[CACHE_NAME])
    again = C.calibrate(tiny_checkpoint, None, "minmax", trt_version="8.5", forms=("flat",), cache_in=path)
    a, b = (_inits(onnx.load_from_string(r.files[FLAT_QDQ])) for r in (built, again))
    for name in a:
        if name.endswith("input_q_scale"):
            assert b[name] == pytest.approx(a[name], rel=1e-6)


# ONNX Runtime -----------------------------------------------------------------


def _agreement(checkpoint, calib, test_images, policy):
    from cosinegate.onnx import conditionalize, mask
    from cosinegate.quant.calibset import to_input
    from cosinegate.training.checkpoint import model_from_checkpoint

    result = C.calibrate(checkpoint, calib, "minmax", 32, forms=("flat", "conditional"), policy=policy)
    model, state = model_from_checkpoint(checkpoint)
    fp32_cond = C.onnxrt_runner(conditionalize(C.flat_twin(model, 1), policy, state.get("skip_rates")))
    flat_q = C.onnxrt_runner(onnx.load_from_string(result.files[FLAT_QDQ]))
    cond_q = C.onnxrt_runner(onnx.load_from_string(result.files[CONDITIONAL_QDQ]))
    masked_q = C.onnxrt_runner(mask(C.quantize_flat(C.flat_twin(model, 1), result.manifest["amax"]), policy, state.get("skip_rates")))
    agree, total = 0, 0
    for image in test_images:
        x = to_input(image[None], model.normalization)
        lf, gf = fp32_cond.infer({"input": x}).values()
        flat_q.infer({"input": x})
        lq, gq = cond_q.infer({"input": x}).values()
        lm, gm = masked_q.infer({"input": x}).values()
        # If graph ~ masked graph (the masked form also quantizes the shortcut of a skipped block)
        assert np.array_equal(gq, gm)
        assert float(np.dot(lq.ravel(), lm.ravel()) / np.linalg.norm(lq) / np.linalg.norm(lm)) > 0.99
        agree += int((gf == gq).sum())
        total += gf.size
    return agree / total


def test_ort_runs_qdq_graphs_tiny(tiny_checkpoint, calib_set, fake_cifar):
    test_images = fake_cifar[1]["test"][0][:20]
    assert _agreement(tiny_checkpoint, calib_set, test_images, "conditional-all") >= 0.9


@requires_real_cifar
def test_real_images_gate_agreement(monkeypatch):
    from cosinegate.data import load_dataset

    monkeypatch.setenv("COSINEGATE_CACHE", str(conftest.USER_CACHE))
    train, test = load_dataset("imagefolder", REAL_CIFAR)
    calib = select(train, 128, 0, "imagefolder", str(REAL_CIFAR))
    pick = np.random.default_rng(0).choice(len(test), 40, replace=False)
    assert _agreement(TRAINED, calib, test.images[pick], "conditional-all") >= 0.99


def test_int8_accuracy_report_runs_both_sides_on_onnx_runtime(tiny_checkpoint, calib_set, fake_cifar):
    from cosinegate.quant.accuracy import evaluate
    from cosinegate.training.checkpoint import model_from_checkpoint

    images, labels = fake_cifar[1]["test"][0][:12], fake_cifar[1]["test"][1][:12]
    model, state = model_from_checkpoint(tiny_checkpoint)
    report = evaluate(model, state, images, labels, calib_set.images, ["minmax"], batch=5, calib_batch=16)  # batches 5, 5, 2
    m = report["methods"]["minmax"]
    assert report["num_images"] == 12 and len(m["gate_agreement"]) == model.num_blocks
    assert m["top1_agreement"] >= 0.75 and m["logits_cosine_min"] > 0.9
