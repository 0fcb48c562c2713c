"""A run's config from a preset and plain overrides (train.py's flags)."""

import pytest

from cosinegate.errors import CosineGateError
from cosinegate.training.checkpoint import save_checkpoint
from cosinegate.training.run_config import OVERRIDES, parse_drop_blocks, run_config


def test_drop_blocks_from_a_gated_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "gated.pt", skip_rates=[0.0, 1.0, 0.3, 0.996, 0.0], config={}, model={}, epoch=0)
    assert parse_drop_blocks(f"from:{tmp_path / 'gated.pt'}") == [1, 3]  # the always-skipped blocks only
    assert parse_drop_blocks("2, 5,8") == [2, 5, 8]
    with pytest.raises(CosineGateError, match="block indices"):
        parse_drop_blocks("two")
    save_checkpoint(tmp_path / "dense.pt", skip_rates=None, config={}, model={}, epoch=0)
    with pytest.raises(CosineGateError, match="stores no skip rates"):
        parse_drop_blocks(f"from:{tmp_path / 'dense.pt'}")


def test_overrides_land_where_their_flags_say_and_none_leaves_the_preset_alone():
    base = run_config("rates")
    config = run_config("rates", backbone="resnet32", data_root="/data", epochs=3, lr=0.02, block_rates=0.4,
                        distill=0.5, seed=7, drop_blocks="1,2", init_from="t.pt", subset=None, schedule=None)
    assert (config["model"]["backbone"], config["data"]["root"], config["optim"]["epochs"]) == ("resnet32", "/data", 3)
    assert (config["optim"]["lr"], config["gate"]["block_rates"], config["distill"]["weight"]) == (0.02, 0.4, 0.5)
    assert (config["seed"], config["model"]["drop_blocks"], config["init_from"]) == (7, [1, 2], "t.pt")
    assert config["optim"]["schedule"] == base["optim"]["schedule"] is not None
    assert config["data"]["subset"] == base["data"]["subset"] and config["optim"]["batch_size"] == base["optim"]["batch_size"]
    assert set(OVERRIDES) >= {"target", "block_rates", "data", "image_size"}
    with pytest.raises(TypeError, match="unknown overrides"):
        run_config("rates", learning_rate=0.1)


def test_a_loss_target_the_preset_does_not_train_is_refused():
    with pytest.raises(CosineGateError, match="no compute penalty"):
        run_config("rates", target=0.5)
    with pytest.raises(CosineGateError, match="does not train toward"):
        run_config("balanced", block_rates=0.5)
    assert run_config("balanced", target=0.5)["gate"]["target"] == 0.5


def test_a_config_is_checked_without_torch(tmp_path):
    """A YAML config's bad names (gate mode, drop-blocks, backbone, schedule) are one line before PyTorch loads:
    the gate modes lived in the network module, so checking any config imported torch first (seconds on an idle
    machine, half a minute beside training)."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['torch'] = None\n"
            "from cosinegate.errors import CosineGateError\nfrom cosinegate.training.run_config import run_config\n"
            "print(run_config('balanced', drop_blocks='1,2')['model']['drop_blocks'])\n"
            "for bad in ({'mode': 'fast'}, {'drop_blocks': '12'}, {'backbone': 'resnet99'}, {'schedule': 'cosin'}):\n"
            "    try:\n        run_config('balanced', **bad)\n    except CosineGateError as exc:\n        print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[1, 2]" and len(lines) == 5, lines
    for line, fragment in zip(lines[1:], ("unknown gate mode 'fast'", "out of range for resnet20", "unknown backbone 'resnet99'",
                                          "optim.schedule = 'cosin'")):
        assert fragment in line, (fragment, line)
