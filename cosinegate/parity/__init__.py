"""Parity of exported graphs with their checkpoints: outputs, gate decisions, top-1, via Polygraphy."""

from cosinegate.parity.compare import BACKENDS, FP16, FP32, INT8, PROFILES, Tolerance, agreement_report, run_parity
from cosinegate.parity.torch_runner import TorchReference, TorchRunner

__all__ = ["BACKENDS", "FP16", "FP32", "INT8", "PROFILES", "Tolerance", "agreement_report", "TorchReference", "TorchRunner", "run_parity"]
