"""Two-phase training: initialise a model from another run's checkpoint (cosinegate train --init-from CKPT).

`read_init_weights` turns a file into a state dict plus a description of where it
came from; `apply_init` copies every tensor whose name and shape the new model
shares and leaves the rest (typically the gates of a dense phase-one checkpoint)
freshly initialised. A torchvision-format ResNet state dict (recognised from its keys) is
mapped by `cosinegate.models.torchvision_import`; its classifier is re-initialised when the
class count differs.
"""

from pathlib import Path

from cosinegate.artifacts import sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.models import torchvision_import


def read_init_weights(path):
    """(state dict, source description) of a CosineGate checkpoint written by cosinegate train or of a
    torchvision-format ResNet state dict (resnet18/34/50)."""
    from cosinegate.training.checkpoint import load_checkpoint, load_tensor_file, weights_problem

    raw = load_tensor_file(path)
    if not (isinstance(raw, dict) and "format" in raw):
        tensors = torchvision_import.unwrap(raw)
        if not torchvision_import.is_torchvision_layout(tensors):
            raise CosineGateError(f"--init-from {path} is neither a CosineGate checkpoint nor a torchvision ResNet state dict "
                                  "(conv1, bn1, layer1..4, fc); pass a file written by cosinegate train or torchvision weights.")
        problem = weights_problem(tensors, "the state dict")
        if problem:
            raise CosineGateError(f"--init-from {path}: {problem}; pass torchvision's weights file as it was downloaded.")
        weights, backbone = torchvision_import.map_state_dict(tensors)
        source = {"path": str(path), "sha256": sha256_file(path), "format": torchvision_import.FORMAT, "backbone": backbone,
                  "num_classes": int(weights["fc.weight"].shape[0]), "replaceable": list(torchvision_import.CLASSIFIER),
                  "normalization": "imagenet"}
        return weights, source
    state = load_checkpoint(path)
    model_cfg = (state.get("config") or {}).get("model")
    if (not isinstance(model_cfg, dict) or not {"backbone", "mode"} <= set(model_cfg)
            or not {"model", "epoch", "num_classes"} <= set(state)):
        raise CosineGateError(f"--init-from {path} has no model config (backbone, mode), weights, epoch or class count; "
                              "pass a checkpoint written by cosinegate train (last.pt or best.pt of a run).")
    source = {"path": str(path), "sha256": sha256_file(path), "format": "cosinegate-checkpoint",
              "backbone": model_cfg["backbone"], "mode": model_cfg["mode"], "epoch": state["epoch"] + 1,
              "num_classes": state["num_classes"]}
    return state["model"], source


def apply_init(model, weights, source):
    """Load the shared tensors of `weights` into `model`; return a JSON-ready report of what was loaded."""
    if source.get("backbone") not in (None, model.backbone):
        raise CosineGateError(f"--init-from {source['path']} holds a {source['backbone']} but this run trains a {model.backbone}; "
                              "pass a checkpoint of the same backbone or change --backbone.")
    own = model.state_dict()
    mismatched = [k for k in weights if k in own and tuple(weights[k].shape) != tuple(own[k].shape)]
    reinitialised = sorted(k for k in mismatched if k in source.get("replaceable", ()))  # e.g. another class count's classifier
    mismatched = [k for k in mismatched if k not in reinitialised]
    if mismatched:
        raise CosineGateError(f"--init-from {source['path']}: {len(mismatched)} tensors have other shapes than this model's "
                              f"(first: {mismatched[0]} {tuple(weights[mismatched[0]].shape)} vs {tuple(own[mismatched[0]].shape)}); "
                              "the number of classes or the backbone differs.")
    shared = {k: v for k, v in weights.items() if k in own and k not in reinitialised}
    if not shared:
        raise CosineGateError(f"--init-from {source['path']} shares no tensor with this model; pass a checkpoint of the same backbone.")
    own.update({k: v.to(own[k].dtype) for k, v in shared.items()})
    model.load_state_dict(own)
    fresh = sorted(k for k in own if k not in shared)
    return {**source, "loaded_tensors": len(shared), "fresh_tensors": len(fresh),
            "fresh_modules": sorted({k.rsplit(".", 1)[0] for k in fresh}), "ignored_tensors": sorted(k for k in weights if k not in own),
            "reinitialised": reinitialised}


def load_teacher(path, device):
    """The --init-from checkpoint as a frozen teacher (eval mode, no gradients) for distillation."""
    from cosinegate.training.checkpoint import model_from_checkpoint

    if not Path(path).is_file():
        raise CosineGateError(f"teacher checkpoint {path} not found; pass --init-from an existing checkpoint.")
    teacher, _ = model_from_checkpoint(path)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device).eval()
