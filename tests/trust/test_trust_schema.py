"""Checkpoint contents checked as the file is read: one line naming the field, the value and what is allowed.

Every row alters one field of a trained checkpoint; loading it (and the evaluate command on it) must be
a clean refusal, never a traceback or a silently wrong run.
"""

import math

import pytest
import torch
from scripts_in_process import run

from cosinegate.errors import CosineGateError
from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint


def _set(path, value):
    def change(state):
        where = state
        for key in path[:-1]:
            where = where[key]
        if value is DELETE:
            del where[path[-1]]
        else:
            where[path[-1]] = value(where[path[-1]]) if callable(value) else value
    return change


DELETE = object()
ROWS = {  # label: (change, part of the message)
    "config without data": (_set(["config", "data"], DELETE), "records no training data"),
    "config.data a list": (_set(["config", "data"], [1, 2]), "config.data = [1, 2] is not a mapping"),
    "image_size 100000": (_set(["config", "data", "image_size"], 100000), "config.data.image_size = 100000"),
    "image_size 'abc'": (_set(["config", "data", "image_size"], "abc"), "config.data.image_size = 'abc'"),
    "data.source 'ftp'": (_set(["config", "data", "source"], "ftp"), "config.data.source = 'ftp'"),
    "backbone a list": (_set(["config", "model", "backbone"], ["resnet20"]), "config.model.backbone = ['resnet20']"),
    "classes = 5": (_set(["classes"], 5), "classes = 5 is not a list"),
    "classes of another length": (_set(["classes"], ["a", "b"]), "is not a list of 10 class names"),
    "num_classes 'ten'": (_set(["num_classes"], "ten"), "num_classes = 'ten'"),
    "skip_rates strings": (_set(["skip_rates"], ["a"] * 9), "skip_rates = ['a'"),
    "skip_rates all NaN": (_set(["skip_rates"], [math.nan] * 9), "skip_rates = [nan"),
    "skip_rates 1.5": (_set(["skip_rates"], [1.5] * 9), "skip_rates = [1.5"),
    "epoch a string": (_set(["epoch"], "3"), "epoch = '3'"),
    "epoch -3": (_set(["epoch"], -3), "epoch = -3"),
    "no rng torch state": (_set(["rng", "torch"], DELETE), "rng is not the torch, numpy and Python RNG states"),
    "numpy key of another length": (_set(["rng", "numpy", "key"], torch.zeros(5, dtype=torch.int64)), "rng is not"),
    "optimizer = {}": (_set(["optimizer"], {}), "optimizer is not an optimizer state"),
    "sparse fc.weight": (_set(["model", "fc.weight"], lambda t: t.to_sparse()), "model['fc.weight'] is a torch.sparse_coo"),
    "a weight that is a string": (_set(["model", "fc.weight"], "w"), "model['fc.weight'] is a str, not a tensor"),
}


@pytest.fixture(scope="module")
def trained(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def _write(trained, tmp_path, change):
    import copy

    state = copy.deepcopy(trained)
    change(state)
    path = tmp_path / "altered.pt"
    save_checkpoint(path, **{k: v for k, v in state.items() if k != "format"})
    return path


@pytest.mark.parametrize("label", sorted(ROWS))
def test_a_bad_checkpoint_field_is_refused_in_one_line(trained, tmp_path, label):
    change, message = ROWS[label]
    path = _write(trained, tmp_path, change)
    code, _, err = run("train/evaluate.py", "--checkpoint", path, "--subset", "10")
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "batch/s]" not in line]
    assert code == 2 and "Traceback" not in err and len(lines) == 1 and message in lines[0], err


def test_a_v1_checkpoint_with_a_short_numpy_rng_is_refused(trained, tmp_path):
    import numpy as np

    state = {**trained, "format": "cosinegate-checkpoint-v1",
             "rng": {"torch": trained["rng"]["torch"], "numpy": ("MT19937", np.zeros(3, np.uint32), 0), "python": (3, (0,), None)}}
    torch.save(state, tmp_path / "v1.pt")
    with pytest.raises(CosineGateError, match="v1.*unreadable RNG state"):
        load_checkpoint(tmp_path / "v1.pt")


def test_train_drop_blocks_from_a_checkpoint_with_string_rates_is_one_line(tmp_path):
    save_checkpoint(tmp_path / "g.pt", skip_rates=["a"] * 9, config={}, model={}, epoch=0)
    code, _, err = run("train/train.py", "--data", "synthetic", "--epochs", "1", "--drop-blocks", f"from:{tmp_path / 'g.pt'}",
                       "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err and "skip_rates = ['a'" in err, err
    assert not (tmp_path / "run").exists()
