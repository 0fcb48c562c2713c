"""How a run executes, not what it learns: mixed precision, memory format, torch.compile, fused optimizer.

These settings are not part of the training config, so a run started with one
setting can be resumed with another (e.g. on another machine). The learned model
is the same recipe; bf16 autocast keeps fp32 master weights, and evaluation always
runs in fp32.
"""

import contextlib
from dataclasses import asdict, dataclass

import torch

from cosinegate.errors import CosineGateError

AMP_CHOICES = ("none", "bf16")


@dataclass(frozen=True)
class Runtime:
    amp: str = "none"  # "bf16": forward under torch.autocast(bfloat16); weights, optimizer and losses stay fp32
    channels_last: bool = False  # NHWC activations and weights (tensor-core friendly convolutions)
    compile: bool = False  # torch.compile the stem and every residual branch in place (state-dict keys unchanged)
    fused: bool = False  # fused SGD kernel (CUDA; falls back to foreach where torch has no fused kernel)

    def __post_init__(self):
        if self.amp not in AMP_CHOICES:
            raise CosineGateError(f"--amp {self.amp!r}; choose one of {', '.join(AMP_CHOICES)}.")

    @classmethod
    def fast(cls, device):
        """The GPU speed settings (bf16, channels_last, fused SGD); the plain fp32 path on a CPU."""
        if torch.device(device).type == "cuda":
            return cls(amp="bf16", channels_last=True, fused=True)
        return cls()

    def as_dict(self):
        return asdict(self)

    def autocast(self, device):
        if self.amp == "bf16":
            return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, model):
        """Memory format, and with compile the stem and each residual branch compiled in place. The gates stay
        eager: their temperature, noise scale and blend are Python numbers that change every step, which
        would make a compiled graph recompile."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            model.stem.compile()
            for block in model.blocks:
                if block.residual is not None:
                    block.residual.compile()
        return model

    def layout(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def optimizer(self, params, device, **sgd):
        """SGD, fused where asked for and available (torch >= 2.3 has fused SGD on CUDA and CPU)."""
        if self.fused:
            try:
                return torch.optim.SGD(params, fused=True, **sgd)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.SGD(params, **sgd)
