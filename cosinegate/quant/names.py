"""The calibration stage's names and defaults (files, forms, TensorRT releases), readable without onnx or torch
(the calibrate command's --help shows them)."""

from cosinegate.graphmeta import GRAPH_FORMS

MANIFEST_FORMAT = "cosinegate-int8-calibration-v1"
FLAT_QDQ, CONDITIONAL_QDQ, MASKED_QDQ = "model.qdq.onnx", "model.qdq.conditional.onnx", "model.qdq.masked.onnx"
COMPACT_QDQ = "model.qdq.compact.onnx"
CACHE_NAME, MANIFEST_NAME = "calibration.cache", "manifest.json"
FORMS = GRAPH_FORMS  # a Q/DQ graph of each
DEFAULT_FORMS = ("flat", "conditional")
METHODS = ("minmax", "percentile", "entropy")  # how a tensor's range is taken (quant/ranges.py)
FILE_BY_FORM = {"flat": FLAT_QDQ, "conditional": CONDITIONAL_QDQ, "masked": MASKED_QDQ, "compact": COMPACT_QDQ}

DEFAULT_TRT = "10.3"  # a short name (trtversion.SHORT_RELEASES): JetPack 6.1/6.2's TensorRT
