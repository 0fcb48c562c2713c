"""Parity of exported graphs with their checkpoints: outputs, gate decisions, top-1, via Polygraphy.

Importing this package needs no PyTorch (device parity uses the tolerance profiles and
``agreement_report``); the PyTorch reference runner is loaded on first use.
"""

from cosinegate.parity.compare import BACKENDS, FP16, FP32, INT8, PROFILES, Tolerance, agreement_report, run_parity

__all__ = ["BACKENDS", "FP16", "FP32", "INT8", "PROFILES", "Tolerance", "agreement_report", "TorchReference", "TorchRunner", "run_parity"]


def __getattr__(name):
    if name in ("TorchReference", "TorchRunner"):
        from cosinegate.parity import torch_runner

        return getattr(torch_runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
