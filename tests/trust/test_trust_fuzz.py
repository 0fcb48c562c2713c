"""Fuzzing the readers of files from outside: a clean refusal (CosineGateError) or a valid load, never another exception.

hypothesis is not a dependency of this project, so the fuzzing is a seeded mutation loop: each reader is fed a few
hundred variants of a valid input (a field replaced by a value of another type or an extreme one, text cut or
spliced), reproducible from the seed shown on failure.
"""

import copy
import json
import math
import random

import pytest

from cosinegate.errors import CosineGateError

SEEDS = range(3)
ODD = [None, True, -1, 0, 1, 2**70, -2**70, 1.5, -0.5, math.nan, math.inf, -math.inf, "", "abc", "\n", "\U0010ffff", "..",
       [], [1, 2, 3], ["a"], [[[]]], {}, {"a": 1}, {"kind": 5}, 1e308, 5e-324]


def _paths(value, prefix=()):
    """Every key path into nested dicts/lists."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:4]):
            yield from _paths(item, prefix + (index,))


def _mutate(value, rng, odd=ODD):
    value = copy.deepcopy(value)
    paths = [p for p in _paths(value) if p]
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        where = value
        try:
            for key in path[:-1]:
                where = where[key]
            if rng.random() < 0.15 and isinstance(where, dict):
                where.pop(path[-1], None)
            else:
                where[path[-1]] = copy.deepcopy(rng.choice(odd))
        except (KeyError, IndexError, TypeError):
            continue
    return value


def _clean(call):
    try:
        call()
    except CosineGateError as exc:
        assert "\n" not in str(exc), str(exc)


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_checkpoint_fields(tiny_checkpoint, seed):
    import torch

    from cosinegate.data.choice import DataOrigin
    from cosinegate.training.checkpoint import image_size_of, load_checkpoint, state_problem

    good = load_checkpoint(tiny_checkpoint)
    light = {k: v for k, v in good.items() if k not in ("model", "optimizer")}  # the weights are checked by shape elsewhere
    light["model"] = {"fc.weight": good["model"]["fc.weight"], "fc.bias": good["model"]["fc.bias"]}
    rng = random.Random(seed)
    for _ in range(200):
        state = _mutate(light, rng, ODD + [torch.zeros(3), torch.zeros(2, 2).to_sparse()])

        def read():
            problem = state_problem(state)
            if problem is None:
                DataOrigin.of_checkpoint(state)
                image_size_of(state)
        _clean(read)


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_graph_metadata(seed):
    from cosinegate.graphmeta import metadata_problem

    good = {"backbone": "resnet20", "batch": 1, "blocks": [{"kind": "dynamic", "post": "relu"}] * 9, "classes": list("abcdefghij"),
            "checkpoint_sha256": "0" * 64, "data": {"source": "cifar10", "root": "/x"}, "form": "conditional",
            "image_size": 32, "input_size": [3, 32, 32], "normalization": {"mean": [0.5] * 3, "std": [0.2] * 3}}
    rng = random.Random(seed)
    for _ in range(300):
        meta = _mutate(good, rng)
        result = metadata_problem(meta, (32, 32), 9)
        assert result is None or isinstance(result, str)


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_json_manifests(tmp_path, seed):
    from cosinegate.artifacts import read_json

    good = json.dumps({"format": "x", "files": {"a.onnx": "0" * 64}, "batch": 1, "nested": [[1, 2], {"a": [3]}]})
    rng = random.Random(seed)
    path = tmp_path / "m.json"
    for _ in range(200):
        text = good
        choice = rng.random()
        if choice < 0.3:
            cut = rng.randrange(len(text))
            text = text[:cut] + text[cut + rng.randint(1, 5):]
        elif choice < 0.6:
            depth = rng.choice([10, 70, 1000, 100000])
            text = rng.choice("[{") * depth if rng.random() < 0.5 else "[" * depth + "]" * depth
            text = text.replace("{", '{"a":')
        else:
            text = json.dumps(_mutate(json.loads(good), rng), allow_nan=True)
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        _clean(lambda: read_json(path, "manifest"))


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_target_profiles(tmp_path, seed):
    from cosinegate.trt import targets

    good = (targets.DEFAULT_TARGETS_DIR / "jetson-orin.toml").read_text().replace('name = "jetson-orin"', 'name = "board"')
    pieces = ["[", "]", "[[tensorrt]]", '"', "'", "\\U00110000", "\\uD800", "=", "\n", "1e400", "99999999999999999999999",
              "[" * 500, "{a = 1}", "a.b = 1", "\xff", "inf", "nan", "true"]
    rng = random.Random(seed)
    for _ in range(200):
        text = good
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            text = text[:at] + rng.choice(pieces) + text[at + rng.randint(0, 3):]
        (tmp_path / "board.toml").write_bytes(text.encode("utf-8", "surrogatepass"))
        _clean(lambda: targets.load_target("board", tmp_path))
