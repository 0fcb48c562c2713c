"""Parity of exported graphs with their checkpoints: outputs, gate decisions, top-1, via Polygraphy.

Importing this package needs neither PyTorch nor Polygraphy (device parity uses the tolerance profiles and
``agreement_report``); the PyTorch reference is cosinegate.runtime.torch_backend's runner and Polygraphy's
Comparator, loaded on first use. Every verdict is device_check.check's, the rule the bundle's check_parity.py applies.
"""

from cosinegate.parity.compare import BACKENDS, FP16, FP32, INT8, PROFILES, Tolerance, agreement_report, run_parity

__all__ = ["BACKENDS", "FP16", "FP32", "INT8", "PROFILES", "Tolerance", "agreement_report", "run_parity"]
