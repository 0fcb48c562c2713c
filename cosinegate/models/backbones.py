"""Backbone specifications: which blocks exist, their widths, strides and shortcuts.

CIFAR ResNets (He et al. 2016): 3 stages of n blocks, widths 16/32/64, option-A
(parameter-free, zero-padded) shortcuts, ReLU after the residual add.
ResNet-20 = 3x3 blocks, 40.55M MACs dense.

Paper backbone (`paper8`, arXiv 2512.22206): 8 blocks, widths 32/64/128/256,
stride 2 at blocks 3, 5 and 7 (1-based), 1x1 projection shortcuts where the shape
changes, and no ReLU after the add.
"""

from dataclasses import dataclass

from cosinegate.errors import CosineGateError

CIFAR_DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
BACKBONES = tuple(CIFAR_DEPTHS) + ("paper8",)


@dataclass(frozen=True)
class BlockSpec:
    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int  # input height = width

    @property
    def out_size(self):
        return self.in_size // self.stride

    @property
    def changes_shape(self):
        return self.stride != 1 or self.in_channels != self.out_channels


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    stem_channels: int
    blocks: tuple
    shortcut: str  # "A" (zero-pad) or "B" (1x1 projection)
    relu_after_add: bool
    image_size: int = 32
    in_channels: int = 3

    @property
    def feature_channels(self):
        return self.blocks[-1].out_channels


def backbone_spec(name):
    """Return the BackboneSpec of a backbone name; unknown names are a CosineGateError."""
    if name in CIFAR_DEPTHS:
        widths, strides = [], []
        for stage, width in enumerate((16, 32, 64)):
            for i in range(CIFAR_DEPTHS[name]):
                widths.append(width)
                strides.append(2 if stage > 0 and i == 0 else 1)
        return _spec(name, 16, widths, strides, shortcut="A", relu_after_add=True)
    if name == "paper8":
        widths = [32, 32, 64, 64, 128, 128, 256, 256]
        strides = [1, 1, 2, 1, 2, 1, 2, 1]
        return _spec(name, 32, widths, strides, shortcut="B", relu_after_add=False)
    raise CosineGateError(
        f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)} (e.g. --backbone resnet20)."
    )


def _spec(name, stem, widths, strides, shortcut, relu_after_add):
    blocks, in_ch, size = [], stem, 32
    for index, (width, stride) in enumerate(zip(widths, strides)):
        blocks.append(BlockSpec(index, in_ch, width, stride, size))
        in_ch, size = width, size // stride
    return BackboneSpec(name, stem, tuple(blocks), shortcut, relu_after_add)
