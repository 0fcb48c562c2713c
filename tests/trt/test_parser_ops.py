"""Replay of TensorRT's ONNX parser op support for the compact form, per release.

Evidence: the ops onnx/onnx-tensorrt imports natively (``DEFINE_BUILTIN_OP_IMPORTER``) at release/8.4-GA, 8.5-GA,
8.6-GA and 10.1-GA (tests/data/onnx_importers/, made by ``scripts/trt_evidence.py importers``). A node without an
importer goes to ``FallbackPluginImporter`` (8.5-GA builtin_op_importers.cpp l.5424-5436), which fails without a
plugin of that name. Importers of the ops the compact form adds (file:line of the DEFINE_BUILTIN_OP_IMPORTER):

| op | 8.4-GA | 8.5-GA | 8.6-GA | 10.1-GA (onnxOpImporters.cpp) |
|---|---|---|---|---|
| NonZero | none | l.5414 | l.5384 | l.6404 |
| Gather | l.1471 | l.1542 | l.1549 | l.1924 |
| ScatterND | l.3981 | l.4445 | l.4401 | l.5148 |
| Squeeze | l.4318 | l.4782 | l.4738 | l.5608 |
| Transpose | l.4480 | l.4955 | l.4923 | l.5790 |
| Reshape | l.3541 | l.3875 | l.3909 | l.4647 |

Input constraints replayed: NonZero takes FLOAT/HALF/INT32/INT8/BOOL (8.5-GA l.5417-5418, 8.6-GA l.5387; 10.1-GA
adds INT64/BF16, l.6408-6409); Squeeze's axes must be an initializer (8.5-GA l.4793 ``assertIsWeights``); ScatterND
runs ``addScatter`` kND with no rank checks (8.5-GA l.4445-4448, onnx2trt_utils.cpp ``addScatterLayer`` l.2253).
The 10.3 sources are not in the stored copies; 10.x is held to the 10.1-GA list (parsers add importers:
every standard op of 8.5-GA is still in 10.1-GA, checked below).
"""

from pathlib import Path

import pytest
from onnx import TensorProto

from cosinegate.errors import CosineGateError
from cosinegate.layernames import COMPACT_FLOOR, COMPACT_OPS, check_compact_releases, compact_release_problem

EVIDENCE = Path(__file__).resolve().parents[1] / "data" / "onnx_importers"
RELEASES = ("8.4-GA", "8.5-GA", "8.6-GA", "10.1-GA")
PARSES_COMPACT = ("8.5-GA", "8.6-GA", "10.1-GA")


def importers(release):
    lines = (EVIDENCE / f"{release}.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def _version(release):
    return tuple(int(p) for p in release.split("-")[0].split("."))


@pytest.fixture(scope="module")
def compact_graphs():
    """{label: ModelProto}: compact ResNet-20 and ResNet-18 at batch 8, fp32 and Q/DQ, policy auto and conditional-all,
    plus the masked graph of the same twin (for what compact adds)."""
    from test_onnx_parser import _model

    from cosinegate.onnx import build_flat_graph, compact, mask, optimize_flat
    from cosinegate.quant.calibrate import quantize_flat, quantized_tensors

    graphs = {}
    for backbone in ("resnet20", "resnet18"):
        flat = optimize_flat(build_flat_graph(_model(backbone), 8))
        qdq = quantize_flat(flat, {t: 1.0 for t in quantized_tensors(flat)})
        rates = [0.0, 1.0] + [0.5] * (len(_model(backbone).blocks) - 2)
        for precision, twin in (("fp32", flat), ("qdq", qdq)):
            graphs[f"{backbone}-{precision}-auto"] = compact(twin, "auto", rates)
            graphs[f"{backbone}-{precision}-all"] = compact(twin, "conditional-all")
            graphs[f"{backbone}-{precision}-masked"] = mask(twin, "conditional-all")
    return graphs


def _ops(model):
    return {node.op_type for node in model.graph.node}


def test_every_op_of_the_compact_graphs_has_an_importer_from_8_5(compact_graphs):
    for label, model in compact_graphs.items():
        for release in PARSES_COMPACT:
            assert _ops(model) <= importers(release), (label, release, sorted(_ops(model) - importers(release)))


def test_8_4_cannot_import_nonzero_so_compact_needs_8_5(compact_graphs):
    missing = _ops(compact_graphs["resnet20-fp32-all"]) - importers("8.4-GA")
    assert missing == {"NonZero"}
    assert not _ops(compact_graphs["resnet20-fp32-masked"]) - importers("8.4-GA")  # masked parses on 8.4 too


def test_the_op_table_lists_what_compact_adds_with_floors_the_evidence_shows(compact_graphs):
    added = set()
    for backbone in ("resnet20", "resnet18"):
        added |= _ops(compact_graphs[f"{backbone}-fp32-all"]) - _ops(compact_graphs[f"{backbone}-fp32-masked"])
    assert added <= set(COMPACT_OPS) and "NonZero" in added
    for op, first in COMPACT_OPS.items():
        for release in RELEASES:
            assert (op in importers(release)) == (_version(release) >= _version(first)), (op, release)
    assert max(_version(first) for first in COMPACT_OPS.values()) == _version(COMPACT_FLOOR)


def test_later_releases_keep_every_standard_importer_of_8_5():
    older = {op for op in importers("8.5-GA") if not op.startswith("TRT_")}
    assert older <= importers("8.6-GA") and older <= importers("10.1-GA")


def test_inputs_take_the_forms_each_importer_accepts(compact_graphs):
    from cosinegate.onnx.passes import infer_shapes

    for label, model in compact_graphs.items():
        model = infer_shapes(model)
        types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
        inits = {t.name for t in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "NonZero":
                assert types[node.input[0]] == TensorProto.BOOL, (label, node.name)
            if node.op_type == "Squeeze":
                assert node.input[1] in inits, (label, node.name)  # 8.5-GA l.4793: axes must be an initializer
            if node.op_type in ("ScatterND", "Gather"):
                assert types[node.input[0]] == TensorProto.FLOAT, (label, node.name)


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2", "10.3.0", "10", "10.15", "11"])
def test_releases_from_8_5_take_compact(version):
    assert compact_release_problem(version) is None


def test_an_older_release_is_refused_in_one_line_naming_it_and_masked():
    with pytest.raises(CosineGateError) as info:
        check_compact_releases(["10.3.0", "8.4.3"], "target old-board")
    text = str(info.value)
    assert "\n" not in text and "8.4.3" in text and "NonZero" in text and "--form masked" in text


def test_every_shipped_target_can_build_compact():
    from cosinegate.trt.targets import list_targets, load_target

    for name in list_targets():
        check_compact_releases([r.version for r in load_target(name).tensorrt], name)


def test_build_settings_refuse_compact_on_an_older_tensorrt():
    from cosinegate.trt.build import build_settings
    from cosinegate.trt.targets import load_target

    profile = load_target("desktop")
    assert build_settings(profile, "8.6.1", "fp16", form="compact").precision == "fp16"
    with pytest.raises(CosineGateError, match="TensorRT 8.4.3.*--form masked"):
        build_settings(profile, "8.4.3", "fp16", form="compact")
