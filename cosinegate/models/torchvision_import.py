"""torchvision-format ResNet state dicts (e.g. ImageNet weights downloaded elsewhere) as CosineGate weights.

torchvision names a ResNet's tensors ``conv1``/``bn1`` (stem), ``layer{1-4}.{j}.conv{k}`` /
``bn{k}`` (residual branch), ``layer{s}.{j}.downsample.{0,1}`` (1x1 projection shortcut) and
``fc``. `map_state_dict` renames them onto a CosineGateNet of the same backbone (resnet18,
resnet34, resnet50); the gates are not in the file, so they keep their fresh, open
initialization. The format is recognised from the keys alone; no torchvision import.
"""

import re

from cosinegate.errors import CosineGateError
from cosinegate.models.backbones import IMAGENET_LAYOUTS

FORMAT = "torchvision-state-dict"
CLASSIFIER = ("fc.weight", "fc.bias")
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.(conv|bn)([1-3])\.(.+)$")
_SHORTCUT_KEY = re.compile(r"layer([1-4])\.(\d+)\.downsample\.([01])\.(.+)$")
_STEM_KEY = re.compile(r"(conv1|bn1)\.(.+)$")


def unwrap(raw):
    """The tensor dict of a loaded file: a plain state dict, or one under 'state_dict' / 'model'."""
    if isinstance(raw, dict):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), dict) and "format" not in raw:
                return raw[key]
    return raw


def is_torchvision_layout(state):
    """True when the keys are a torchvision ResNet's (stem conv1/bn1, layer1..4, fc)."""
    if not isinstance(state, dict):
        return False
    keys = set(state)
    return {"conv1.weight", "bn1.weight", "fc.weight"} <= keys and any(isinstance(k, str) and k.startswith("layer4.") for k in keys)


def detect_backbone(state):
    """resnet18 / resnet34 / resnet50 from the number of blocks per stage and the block kind."""
    depths = [1 + max((int(m.group(2)) for m in map(_BLOCK_KEY.match, state) if m and m.group(1) == str(s)), default=-1)
              for s in range(1, 5)]
    kind = "bottleneck" if any(k.endswith(".conv3.weight") for k in state) else "basic"
    for name, (layout_kind, layout_depths) in IMAGENET_LAYOUTS.items():
        if layout_kind == kind and tuple(depths) == layout_depths:
            return name
    raise CosineGateError(
        f"the torchvision state dict has {kind} blocks {depths} per stage, which is none of "
        f"{', '.join(IMAGENET_LAYOUTS)}; pass weights of one of those."
    )


def map_state_dict(state):
    """(CosineGate state dict, backbone) of a torchvision ResNet state dict; unknown keys are refused."""
    backbone = detect_backbone(state)
    depths = IMAGENET_LAYOUTS[backbone][1]
    first = [sum(depths[:s]) for s in range(4)]  # global index of each stage's first block
    out, unknown = {}, []
    for key, tensor in state.items():
        if key in CLASSIFIER:
            out[key] = tensor
        elif m := _STEM_KEY.match(key):
            out[f"stem.{0 if m.group(1) == 'conv1' else 1}.{m.group(2)}"] = tensor
        elif m := _BLOCK_KEY.match(key):
            stage, j, layer, k, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
            position = 3 * (k - 1) + (0 if layer == "conv" else 1)  # residual = conv, bn, relu, conv, bn, ...
            out[f"blocks.{first[stage] + j}.residual.{position}.{rest}"] = tensor
        elif m := _SHORTCUT_KEY.match(key):
            stage, j = int(m.group(1)) - 1, int(m.group(2))
            out[f"blocks.{first[stage] + j}.shortcut.{m.group(3)}.{m.group(4)}"] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise CosineGateError(f"the torchvision state dict has keys no ResNet of this layout has (first: {unknown[0]}); "
                              "pass an unmodified torchvision resnet18/34/50 state dict.")
    return out, backbone
