"""Gated ResNets: backbones, the gated residual block and its gates.

``backbone_spec`` needs no PyTorch (MAC tables on the device); the network is imported on first use.
"""

from cosinegate.models.backbones import BACKBONES, backbone_spec

__all__ = ["BACKBONES", "backbone_spec", "CosineGateNet", "build_model"]


def __getattr__(name):
    if name in ("CosineGateNet", "build_model"):
        from cosinegate.models import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
