"""Checkpoints: atomic save, validated load, model reconstruction."""

from pathlib import Path

import torch

from cosinegate.artifacts import atomic_path
from cosinegate.errors import CosineGateError

FORMAT = "cosinegate-checkpoint-v1"


def save_checkpoint(path, **state):
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path):
    """Load a checkpoint dict; missing, corrupt or foreign files are a CosineGateError."""
    path = Path(path)
    if not path.is_file():
        raise CosineGateError(f"checkpoint {path} not found; train one with `python train/train.py` or fix the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CosineGateError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); retrain or restore it.") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CosineGateError(f"{path} is not a CosineGate checkpoint (no '{FORMAT}' marker); pass a file written by train/train.py.")
    return state


def model_from_checkpoint(path, backbone=None):
    """Rebuild the model in eval mode; `backbone`, if given, must match the checkpoint."""
    from cosinegate.models import build_model

    state = load_checkpoint(path)
    config = state["config"]
    if backbone is not None and backbone != config["model"]["backbone"]:
        raise CosineGateError(
            f"checkpoint {path} holds a {config['model']['backbone']} but --backbone {backbone} was asked for; "
            "drop --backbone or pass a matching checkpoint."
        )
    model = build_model(config["model"], num_classes=state["num_classes"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state
