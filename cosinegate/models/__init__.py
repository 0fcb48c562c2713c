"""Gated ResNets: backbones, the gated residual block and its gates."""

from cosinegate.models.backbones import BACKBONES, backbone_spec
from cosinegate.models.network import CosineGateNet, build_model

__all__ = ["BACKBONES", "backbone_spec", "CosineGateNet", "build_model"]
