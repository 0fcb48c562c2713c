"""The preprocessing rule and MAC counts of the model card: made from the model, checked when read back, optional
for graphs and manifests written before they were stored."""

import copy

import pytest

from cosinegate.graphmeta import metadata_problem
from cosinegate.manifests import BundleManifest, EngineManifest
from cosinegate.models import build_model
from cosinegate.onnx.card import mac_counts, normalization, preprocessing


@pytest.fixture(scope="module")
def card():
    model = build_model({"backbone": "resnet20", "mode": "predictive"}, num_classes=10, image_size=32)
    return {"image_size": 32, "preprocessing": preprocessing(model, normalization(model)), "macs": mac_counts(model)}


def test_the_card_records_the_rule_of_cosinegate_data_resize(card):
    pre = card["preprocessing"]
    assert pre["resize"] == "native-or-center-crop" and pre["crop"] == [32, 32] and pre["resize_shorter_side"] == 37
    assert pre["scale"] == 1 / 255 and pre["layout"] == "NCHW" and pre["input"] == "input"
    assert card["macs"]["dense"] == 40551040 and len(card["macs"]["blocks"]) == 9  # ResNet-20, cosinegate/macs.py
    assert metadata_problem(card, (32, 32), 9) is None


def test_a_larger_input_records_its_own_sizes():
    model = build_model({"backbone": "resnet20", "mode": "predictive"}, num_classes=10, image_size=96)
    pre = preprocessing(model, normalization(model))
    assert pre["crop"] == [96, 96] and pre["resize_shorter_side"] == 110  # round(96 / 0.875)


BAD = {
    "crop vs graph": (("preprocessing", "crop"), [64, 64], "cosinegate.preprocessing crop = [64, 64] disagrees with the graph's input 32x32"),
    "unknown resize": (("preprocessing", "resize"), "stretch", "resize = 'stretch' is not one of native-or-center-crop"),
    "side below crop": (("preprocessing", "resize_shorter_side"), 16, "resize_shorter_side = 16 is not a side"),
    "zero std": (("preprocessing", "std"), [0.2, 0.0, 0.2], "normalization mean"),
    "layout": (("preprocessing", "layout"), "NHWC", "are not [0, 255], NCHW, float32"),
    "not a record": (("preprocessing",), "eval", "cosinegate.preprocessing = 'eval' is not a preprocessing record"),
    "blocks vs gates": (("macs", "blocks"), [{"residual": 1, "shortcut": 0, "gate": 1}], "cosinegate.macs lists 1 blocks but"),
    "negative count": (("macs", "stem"), -5, "has no stem, classifier and dense MAC counts"),
    "bool count": (("macs", "dense"), True, "has no stem, classifier and dense MAC counts"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_are_refused_naming_the_field(card, case):
    path, value, text = BAD[case]
    meta = copy.deepcopy(card)
    if len(path) == 1:
        meta[path[0]] = value
    else:
        meta[path[0]][path[1]] = value
    problem = metadata_problem(meta, (32, 32), 9)
    assert problem is not None and text in problem, problem


def test_graphs_and_manifests_without_them_still_read(card):
    assert metadata_problem({"image_size": 32, "normalization": card["preprocessing"]}, (32, 32), 9) is None
    old = {"format": "cosinegate-bundle-v1", "model": "m", "card": {"classes": ["a", "b"]}, "files": {}}
    assert BundleManifest.from_json(old, "manifest.json").preprocessing is None
    assert "preprocessing" not in BundleManifest.from_json(old, "manifest.json").to_json()
    engine = EngineManifest.from_json({"format": "cosinegate-engine-v1", "model": "m"}, "x.engine.json")
    assert engine.preprocessing is None and "preprocessing" not in engine.to_json()
    assert EngineManifest(preprocessing=card["preprocessing"]).to_json()["preprocessing"]["crop"] == [32, 32]


def test_block_kinds_lists_each_blocks_kind_in_order():
    from cosinegate.graphmeta import block_kinds

    meta = {"blocks": [{"kind": "always_run", "post": "a"}, {"kind": "dynamic"}, {"kind": "always_skipped"}]}
    assert block_kinds(meta) == ["always_run", "dynamic", "always_skipped"]
    assert block_kinds({}) == [] and block_kinds({"blocks": None}) == []  # a graph that lists no blocks
