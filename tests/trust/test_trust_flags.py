"""Extreme flag values: refused in one line before any work (no hang, no traceback), nothing written."""


import pytest
from conftest import within
from scripts_in_process import run

BN, EI, BE, CA, GS, FG = ("deploy/bench.py", "calibration/evaluate_int8.py", "deploy/build_engine.py", "calibration/calibrate.py",
                          "deploy/gpu_gate_sync.py", "deploy/force_gates.py")

CASES = [  # (label, script, argv (CKPT = the tiny checkpoint), part of the message)
    ("bench --duration 1e308", BN, ["--checkpoint", "CKPT", "--backend", "torch", "--duration", "1e308"], "over the 3600 s limit"),
    ("bench --warmup-seconds 1e308", BN, ["--checkpoint", "CKPT", "--backend", "torch", "--warmup-seconds", "1e308"],
     "over the 3600 s limit"),
    ("bench --iterations 10**12", BN, ["--checkpoint", "CKPT", "--backend", "torch", "--iterations", str(10**12)], "over the limit"),
    ("evaluate_int8 --eval-batch 0", EI, ["--checkpoint", "CKPT", "--eval-batch", "0"], "--eval-batch: must be at least 1"),
    ("evaluate_int8 --batch-size -1", EI, ["--checkpoint", "CKPT", "--batch-size", "-1"], "--batch-size: must be at least 1"),
    ("evaluate_int8 --seed -1", EI, ["--checkpoint", "CKPT", "--seed", "-1"], "--seed: must be at least 0"),
    ("evaluate_int8 --test-images 0", EI, ["--checkpoint", "CKPT", "--test-images", "0"], "--test-images: must be at least 1"),
    ("build_engine --select-images -5", BE, ["--target", "jetson-orin", "--checkpoint", "CKPT", "--select-images", "-5"],
     "--select-images: must be at least 1"),
    ("calibrate --seed 2**70", CA, ["--checkpoint", "CKPT", "--seed", str(2**70)], "a 32-bit seed"),
    ("gpu_gate_sync --iterations 0", GS, ["--device", "cpu", "--iterations", "0"], "--iterations: must be at least 1"),
    ("force_gates --samples -1", FG, ["--checkpoint", "CKPT", "--samples", "-1", "--out", "OUT"], "--samples: must be at least 1"),
]


@pytest.mark.parametrize("label", [c[0] for c in CASES])
def test_extreme_flags_are_refused_at_once(tiny_checkpoint, tmp_path, label):
    _, script, argv, message = next(c for c in CASES if c[0] == label)
    argv = [str(tiny_checkpoint) if a == "CKPT" else str(tmp_path / "out.pt") if a == "OUT" else a for a in argv]
    with within(30):
        code, _, err = run(script, *argv)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("usage:") and not line.startswith("  ")]
    assert code == 2 and "Traceback" not in err and message in err and len(lines) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_build_engine_workspace_is_capped(tiny_checkpoint, tmp_path):
    code, _, err = run(BE, "--target", "jetson-orin", "--checkpoint", tiny_checkpoint, "--workspace", str(10**30), "--out", tmp_path / "e")
    assert code == 2 and "--workspace 1000000000000000000000000000000 MiB is out of range" in err and "Traceback" not in err, err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("name, value", [("COSINEGATE_CALIB_COUNT", "abc"), ("COSINEGATE_CALIB_SEED", str(2**70)),
                                         ("COSINEGATE_CALIB_BATCH", "0")])
def test_the_board_data_loader_refuses_bad_settings_in_one_line(name, value):
    from scripts_in_process import script

    from cosinegate.errors import CosineGateError

    loader = script("calibration/data_loader.py")
    with pytest.raises(CosineGateError, match=f"{name}=.* is not a whole number in"):
        loader.settings({name: value})
