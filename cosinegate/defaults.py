"""The embedded default model: the small predictive CosineGate that the README's main job trains.

`scripts/pipeline.sh` trains it into DEFAULT_RUN with the same recipe (from the checkout's root);
commands that need a model and are given none (e.g. `cosinegate build-engine --target jetson-orin`)
use that checkpoint, training it first when it is missing (about two CPU minutes).

DEFAULT_RUN is relative: it names runs/pipeline/balanced-resnet20 under the current directory, never a
folder inside the installed package.
"""

from pathlib import Path

DEFAULT_RUN = Path("runs") / "pipeline" / "balanced-resnet20"
DEFAULT_RECIPE = {"preset": "balanced", "data": "synthetic", "epochs": 8, "subset": 4000}


def default_checkpoint(log=print):
    """Path of the embedded default checkpoint, trained on the synthetic data if it is missing."""
    from cosinegate.config import load_config, validate
    from cosinegate.training.loop import train

    path = DEFAULT_RUN / "best.pt"
    if path.is_file():
        return path
    log(f"no --checkpoint given: training the embedded default model into {DEFAULT_RUN.absolute()} "
        f"({DEFAULT_RECIPE['preset']} preset, {DEFAULT_RECIPE['data']} data, {DEFAULT_RECIPE['epochs']} epochs, "
        f"{DEFAULT_RECIPE['subset']} images)")
    config = load_config(DEFAULT_RECIPE["preset"])
    config["data"].update(source=DEFAULT_RECIPE["data"], subset=DEFAULT_RECIPE["subset"])
    config["optim"]["epochs"] = DEFAULT_RECIPE["epochs"]
    train(validate(config), DEFAULT_RUN, resume=(DEFAULT_RUN / "last.pt").is_file(), log=log)
    return path
