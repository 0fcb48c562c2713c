"""Checkpoints from strangers: read with weights_only=True, a pickled object is refused by every command before it runs."""

import random
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_config
from scripts_in_process import run

from cosinegate.errors import CosineGateError
from cosinegate.training import checkpoint as ckpt


class _WritesMarker:
    """Unpickling this runs exec(), which writes a marker file: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def crafted_checkpoint(path, marker, where="config"):
    """A file that passes for a CosineGate checkpoint, with a code-running object at `where`."""
    state = {"format": ckpt.FORMAT, "config": {}, "model": {}, "num_classes": 10, "epoch": 0, "skip_rates": [0.0] * 9}
    state[where] = _WritesMarker(marker)
    torch.save(state, path)
    return path


def test_the_crafted_pickle_really_runs_code_when_loaded_unsafely(tmp_path):
    """Control: without weights_only the same file does run its code, so the refusals below mean something."""
    marker = tmp_path / "ran"
    path = crafted_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("where", ["config", "model", "rng"])
def test_load_refuses_a_pickled_object_without_running_it(tmp_path, where):
    marker = tmp_path / "ran"
    path = crafted_checkpoint(tmp_path / "evil.pt", marker, where)
    with pytest.raises(CosineGateError, match="pickled Python objects .*builtins.exec.* refused unread"):
        ckpt.load_checkpoint(path)
    assert not marker.exists()


def test_an_object_inside_a_numpy_array_is_refused_too(tmp_path):
    """numpy arrays are allowed for v1 files; an object array must not smuggle code through them."""
    marker = tmp_path / "ran"
    torch.save({"format": "cosinegate-checkpoint-v1", "rng": np.array([_WritesMarker(marker)], dtype=object)}, tmp_path / "a.pt")
    with pytest.raises(CosineGateError, match="builtins.exec"):
        ckpt.load_checkpoint(tmp_path / "a.pt")
    assert not marker.exists()


def test_a_trained_checkpoint_needs_no_unsafe_global(tiny_checkpoint):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tiny_checkpoint) == []
    state = torch.load(tiny_checkpoint, weights_only=True)  # what a stranger's loader would do
    assert state["format"] == ckpt.FORMAT and isinstance(state["rng"]["numpy"]["key"], torch.Tensor)


def test_save_refuses_what_a_safe_load_could_not_read(tmp_path):
    with pytest.raises(TypeError, match="numpy"):
        ckpt.save_checkpoint(tmp_path / "x.pt", best_val=np.float64(0.5))
    assert not list(tmp_path.iterdir())


def test_rng_roundtrip_is_exact():
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian behind
    saved = ckpt.capture_rng()
    expected = (torch.rand(4), np.random.rand(4), np.random.standard_normal(), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    ckpt.restore_rng(saved)
    again = (torch.rand(4), np.random.rand(4), np.random.standard_normal(), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2:] == again[2:]


def test_v1_checkpoint_is_read_safely_and_upgraded(tiny_checkpoint, tmp_path):
    """v1 stored numpy's RNG state as an ndarray and tuples: read with only numpy's data globals allowed."""
    state = ckpt.load_checkpoint(tiny_checkpoint)
    np.random.seed(4), random.seed(4)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    state.update(format="cosinegate-checkpoint-v1", best_val=np.float64(state["best_val"]),
                 rng={"torch": torch.get_rng_state(), "numpy": numpy_state, "python": python_state})
    torch.save(state, tmp_path / "v1.pt")
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "v1.pt")
    upgraded = ckpt.load_checkpoint(tmp_path / "v1.pt")
    assert upgraded["format"] == ckpt.FORMAT and type(upgraded["best_val"]) is float
    np.random.seed(0), random.seed(0)
    ckpt.restore_rng(upgraded["rng"])
    assert np.array_equal(np.random.get_state()[1], numpy_state[1]) and random.getstate() == python_state
    ckpt.save_checkpoint(tmp_path / "v2.pt", **{k: v for k, v in upgraded.items() if k != "format"})  # plain again
    model, _ = ckpt.model_from_checkpoint(tmp_path / "v1.pt")
    assert torch.equal(model.state_dict()["fc.weight"], state["model"]["fc.weight"])


def test_every_command_that_loads_a_checkpoint_refuses_the_crafted_one(tmp_path, fake_cifar_root):
    """evaluate, export, parity, calibrate, evaluate_int8, build_engine, bench (torch and onnxrt-from-checkpoint),
    train --resume, --drop-blocks from:, --init-from and --distill, force_gates and gpu_gate_sync: all refuse before
    running anything of the file."""
    marker = tmp_path / "ran"
    evil = crafted_checkpoint(tmp_path / "evil.pt", marker)
    resume_dir = tmp_path / "run"
    resume_dir.mkdir()
    crafted_checkpoint(resume_dir / "last.pt", marker)
    data = ["--data", "cifar10", "--data-root", fake_cifar_root]
    given_onnx = tmp_path / "given.onnx"
    given_onnx.write_bytes(b"not read: the checkpoint is refused first")
    commands = {
        "evaluate": ("train/evaluate.py", "--checkpoint", evil),
        "export": ("deploy/export_onnx.py", "--checkpoint", evil, "--out", tmp_path / "m.onnx"),
        "parity": ("deploy/parity.py", "--checkpoint", evil, "--onnx", given_onnx),
        "calibrate": ("calibration/calibrate.py", "--checkpoint", evil, "--out", tmp_path / "cal"),
        "evaluate_int8": ("calibration/evaluate_int8.py", "--checkpoint", evil),
        "build_engine": ("deploy/build_engine.py", "--target", "jetson-orin", "--checkpoint", evil, "--out", tmp_path / "eng"),
        "bench torch": ("deploy/bench.py", "--backend", "torch", "--checkpoint", evil),
        "bench onnxrt": ("deploy/bench.py", "--backend", "onnxrt", "--checkpoint", evil),
        "train --resume": ("train/train.py", *data, "--epochs", "1", "--resume", "--no-progress", "--out", resume_dir),
        "train --drop-blocks": ("train/train.py", "--drop-blocks", f"from:{evil}", "--out", tmp_path / "drop"),
        "train --init-from": ("train/train.py", *data, "--epochs", "1", "--init-from", evil, "--no-progress",
                              "--out", tmp_path / "init"),
        "train --distill": ("train/train.py", *data, "--epochs", "1", "--init-from", evil, "--distill", "0.5",
                            "--no-progress", "--out", tmp_path / "distill"),
        "force_gates": ("deploy/force_gates.py", "--checkpoint", evil, "--out", tmp_path / "forced.pt"),
        "gpu_gate_sync": ("deploy/gpu_gate_sync.py", "--checkpoint", evil, "--device", "cpu"),
    }
    for name, (path, *argv) in commands.items():
        code, _, err = run(path, *argv)
        assert code == 2 and "refused unread" in err and "Traceback" not in err, (name, code, err[-800:])
        assert not marker.exists(), name
    assert not any((tmp_path / name).exists() for name in ("m.onnx", "cal", "drop", "init", "distill", "forced.pt"))


def _altered(src, dst, change):
    state = ckpt.load_checkpoint(src)
    change(state)
    ckpt.save_checkpoint(dst, **{k: v for k, v in state.items() if k != "format"})
    return dst


def test_damaged_weights_are_refused_in_one_line(tiny_checkpoint, tmp_path):
    def nan(state):
        state["model"]["fc.weight"][0, 0] = float("nan")

    def shape(state):
        state["num_classes"] = 7

    def missing(state):
        del state["model"]["fc.bias"]

    def no_config(state):
        state["config"] = "resnet20"

    def zero_std(state):  # a constant input: every gate decides alike, "savings" would be nonsense
        state["normalization"] = {"mean": [0.0, 0.0, 0.0], "std": [0.0, 0.0, 0.0], "source": "given"}

    def nan_mean(state):
        state["normalization"] = {"mean": [float("nan"), 0.0, 0.0], "std": [0.2, 0.2, 0.2], "source": "given"}

    def no_std(state):
        state["normalization"] = {"mean": [0.5, 0.5, 0.5]}

    def stride_zero(state):  # attacker review: 2.3 MB that weights_only accepts; the NaN scan allocated 4 TiB
        state["model"]["fc.weight"] = torch.zeros(1).expand(2**40)

    for change, message in ((nan, "NaN or infinite weights \\(fc.weight\\)"), (shape, "is not a list of 7 class names"),
                            (missing, "does not match the model .*fc.bias"), (no_config, "config = 'resnet20' is not a mapping"),
                            (zero_std, "finite positive stds"), (nan_mean, "finite positive stds"),
                            (no_std, "no usable normalization"),
                            (stride_zero, "fc.weight'\\] is a view of \\(1099511627776,\\) over 4 bytes")):
        path = _altered(tiny_checkpoint, tmp_path / f"{change.__name__}.pt", change)
        with pytest.raises(CosineGateError, match=message):
            ckpt.model_from_checkpoint(path)


def test_a_folder_given_as_the_checkpoint_names_the_file_to_pass(tmp_path):
    """A new user's finding: `--checkpoint runs` (a folder) was reported as not found."""
    with pytest.raises(CosineGateError, match="is a folder; pass the file in it \\(e.g. .*best.pt\\)"):
        ckpt.load_checkpoint(tmp_path)



@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("rng"), "it lacks rng"),
    (lambda s: s.pop("optimizer"), "it lacks optimizer"),
    (lambda s: s.update(best_val="high"), "has best_val = 'high', not a number"),
    (lambda s: s.update(optimizer={"state": {}, "param_groups": [{"params": [999]}]}), "optimizer state do not fit"),
    (lambda s: s["model"].update({"stem.0.weight": torch.zeros(1)}), "weights or optimizer state do not fit .*stem.0.weight"),
], ids=["no-rng", "no-optimizer", "best-val-text", "optimizer-of-another-model", "weights-of-another-shape"])
def test_a_damaged_last_checkpoint_is_refused_by_resume_in_one_line(tiny_run, tmp_path, fake_cifar_root, change, message):
    """Attacker review: load_checkpoint checks the fields a file holds, resume needs more of them to fit its model."""
    from cosinegate.training.loop import train

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    _altered(tiny_run / "last.pt", run_dir / "last.pt", change)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    with pytest.raises(CosineGateError, match=f"last.pt cannot be resumed: .*{message}"):
        train(tiny_config(fake_cifar_root, epochs=2), run_dir, resume=True, progress=False)  # the run's own config
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def _torchvision_like(**extra):
    t = torch.zeros(2)
    weights = {"conv1.weight": t, "bn1.weight": t, "fc.weight": t}
    weights.update({f"layer{s}.{j}.conv1.weight": t for s in range(1, 5) for j in range(2)})
    return {**weights, **extra}


@pytest.mark.parametrize("make, message", [
    (lambda tiny: torch.save(_torchvision_like(**{"fc.weight": 5}), "f.pt"), "the state dict\\['fc.weight'\\] is a int, not a tensor"),
    (lambda tiny: torch.save({**_torchvision_like(), 7: torch.zeros(2)}, "f.pt"), "the state dict has the key 7, not a weight name"),
    (lambda tiny: _altered(tiny, "f.pt", lambda s: s["config"].update(model={})), "has no model config \\(backbone, mode\\)"),
], ids=["value-not-a-tensor", "key-not-a-name", "no-backbone"])
def test_init_from_refuses_a_crafted_file_in_one_line(tiny_checkpoint, tmp_path, monkeypatch, make, message):
    """Attacker review: a torchvision-like dict of other things, or a checkpoint without its model's backbone."""
    from cosinegate.training.init_from import read_init_weights

    monkeypatch.chdir(tmp_path)
    make(tiny_checkpoint)
    with pytest.raises(CosineGateError, match=f"--init-from f.pt.*{message}"):
        read_init_weights("f.pt")


@pytest.mark.parametrize("name, text", [("config.json", '{"model": {}}'), ("metrics.yaml", "epochs: 3\n"),
                                        ("notes", '  [1, 2]')])
def test_a_text_file_passed_as_checkpoint_is_named_as_the_wrong_file(tmp_path, name, text):
    """New-user audit: `evaluate --checkpoint RUN/config.json` said the file was corrupt; it is the wrong file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CosineGateError, match=r"is not a torch.save file \(a text or JSON file\?\); pass a run's best.pt"):
        ckpt.load_checkpoint(path)
