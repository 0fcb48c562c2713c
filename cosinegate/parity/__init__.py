"""Parity of exported graphs with their checkpoints: outputs, gate decisions, top-1, via Polygraphy."""

from cosinegate.parity.compare import BACKENDS, FP32, INT8, Tolerance, run_parity
from cosinegate.parity.torch_runner import TorchReference, TorchRunner

__all__ = ["BACKENDS", "FP32", "INT8", "Tolerance", "TorchReference", "TorchRunner", "run_parity"]
