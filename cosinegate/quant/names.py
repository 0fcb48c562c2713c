"""The calibration stage's names and defaults (files, forms, TensorRT releases), readable without onnx or torch
(the calibrate command's --help shows them)."""

MANIFEST_FORMAT = "cosinegate-int8-calibration-v1"
FLAT_QDQ, CONDITIONAL_QDQ, MASKED_QDQ = "model.qdq.onnx", "model.qdq.conditional.onnx", "model.qdq.masked.onnx"
COMPACT_QDQ = "model.qdq.compact.onnx"
CACHE_NAME, MANIFEST_NAME = "calibration.cache", "manifest.json"
FORMS = ("flat", "conditional", "masked", "compact")
DEFAULT_FORMS = ("flat", "conditional")
FILE_BY_FORM = {"flat": FLAT_QDQ, "conditional": CONDITIONAL_QDQ, "masked": MASKED_QDQ, "compact": COMPACT_QDQ}

# Short names for the two Jetson TensorRT worlds: JetPack 5.1.x ships TensorRT 8.5.2,
# JetPack 6.1/6.2 ship TensorRT 10.3.0.
TRT_ALIASES = {"8.5": "8.5.2", "10.3": "10.3.0"}
DEFAULT_TRT = "10.3"
