"""Backbone specifications: which blocks exist, their widths, strides, shortcuts and input sizes.

CIFAR ResNets (He et al. 2016): 3x3 stem, 3 stages of n basic blocks, widths
16/32/64, option-A (parameter-free, zero-padded) shortcuts, ReLU after the add.
ResNet-20 = 3x3 blocks, 40.55M MACs dense at 32x32.

Paper backbone (`paper8`, arXiv 2512.22206): 8 blocks, widths 32/64/128/256,
stride 2 at blocks 3, 5 and 7 (1-based), 1x1 projection shortcuts where the shape
changes, and no ReLU after the add.

ImageNet ResNets (torchvision's layout): 7x7 stride-2 stem and 3x3 stride-2
max-pool, four stages of widths 64/128/256/512, 1x1 projection shortcuts where the
shape changes. `resnet18`/`resnet34` use basic blocks (two 3x3 convolutions),
`resnet50` bottlenecks (1x1 reduce, 3x3 with the stride, 1x1 expand to 4x the
width: torchvision's "v1.5" placement of the stride). 1.82 / 3.67 / 4.09 GMACs at 224.
"""

import numbers
from dataclasses import dataclass

from cosinegate.errors import CosineGateError
from cosinegate.schema import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE  # noqa: F401 (the bounds every reader checks)

CIFAR_DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
# name -> (block kind, blocks per stage)
IMAGENET_LAYOUTS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)), "resnet50": ("bottleneck", (3, 4, 6, 3))}
BACKBONES = tuple(CIFAR_DEPTHS) + ("paper8",) + tuple(IMAGENET_LAYOUTS)
IMAGENET_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4


def default_image_size(name):
    """The input size a backbone is usually trained at: 224 for the ImageNet ResNets, else 32."""
    return 224 if name in IMAGENET_LAYOUTS else 32


def downsampled(size, stride):
    """Output height of a stride-s convolution or pooling padded 'same' (k//2): ceil(size / stride)."""
    return -(-size // stride)


@dataclass(frozen=True)
class BlockSpec:
    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int  # input height = width
    kind: str = "basic"  # "basic" (3x3, 3x3) or "bottleneck" (1x1, 3x3, 1x1)
    mid_channels: int = 0  # bottleneck width (the 3x3 convolution's channels)

    @property
    def out_size(self):
        return downsampled(self.in_size, self.stride)

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
    stem: str = "cifar"  # "cifar": 3x3 stride-1 conv; "imagenet": 7x7 stride-2 conv + 3x3 stride-2 max-pool

    @property
    def feature_channels(self):
        return self.blocks[-1].out_channels

    @property
    def stem_kernel(self):
        return 7 if self.stem == "imagenet" else 3

    @property
    def stem_stride(self):
        return 2 if self.stem == "imagenet" else 1

    @property
    def stem_conv_size(self):
        """Output height of the stem convolution (before the max-pool, if any)."""
        return downsampled(self.image_size, self.stem_stride)


def backbone_spec(name, image_size=None):
    """Return the BackboneSpec of a backbone name at `image_size` (default: the backbone's usual size).

    Unknown names and unusable sizes are a CosineGateError.
    """
    if not isinstance(name, str) or name not in BACKBONES:
        raise CosineGateError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)} (e.g. --backbone resnet20)."
        )
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral)):
        raise CosineGateError(f"image size {image_size!r} is not a whole number of pixels; give e.g. --image-size 32.")
    size = default_image_size(name) if image_size is None else int(image_size)
    if size < MIN_IMAGE_SIZE:
        raise CosineGateError(f"--image-size {size} is too small; use at least {MIN_IMAGE_SIZE} (e.g. 32, 64 or 224).")
    if size > MAX_IMAGE_SIZE:
        raise CosineGateError(f"--image-size {size} is too large; use at most {MAX_IMAGE_SIZE} (e.g. 32, 64 or 224).")
    if name in CIFAR_DEPTHS:
        widths, strides = [], []
        for stage, width in enumerate((16, 32, 64)):
            for i in range(CIFAR_DEPTHS[name]):
                widths.append(width)
                strides.append(2 if stage > 0 and i == 0 else 1)
        return _spec(name, 16, widths, strides, "A", True, size)
    if name == "paper8":
        widths = [32, 32, 64, 64, 128, 128, 256, 256]
        strides = [1, 1, 2, 1, 2, 1, 2, 1]
        return _spec(name, 32, widths, strides, "B", False, size)
    return _imagenet_spec(name, size)


def _spec(name, stem, widths, strides, shortcut, relu_after_add, image_size):
    blocks, in_ch, size = [], stem, image_size
    for index, (width, stride) in enumerate(zip(widths, strides)):
        blocks.append(BlockSpec(index, in_ch, width, stride, size))
        in_ch, size = width, downsampled(size, stride)
    return BackboneSpec(name, stem, tuple(blocks), shortcut, relu_after_add, image_size)


def _imagenet_spec(name, image_size):
    kind, depths = IMAGENET_LAYOUTS[name]
    expansion = BOTTLENECK_EXPANSION if kind == "bottleneck" else 1
    stem_channels = IMAGENET_WIDTHS[0]
    size = downsampled(downsampled(image_size, 2), 2)  # stem conv, then max-pool
    blocks, in_ch = [], stem_channels
    for stage, (width, depth) in enumerate(zip(IMAGENET_WIDTHS, depths)):
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            out_ch = width * expansion
            mid = width if kind == "bottleneck" else 0
            blocks.append(BlockSpec(len(blocks), in_ch, out_ch, stride, size, kind, mid))
            in_ch, size = out_ch, downsampled(size, stride)
    return BackboneSpec(name, stem_channels, tuple(blocks), "B", True, image_size, stem="imagenet")
