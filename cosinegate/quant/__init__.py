"""Model-independent INT8 building blocks.

- `ranges`: batch-size- and order-invariant activation range collection
  (minmax, percentile, entropy).
- `cache`: TensorRT calibration cache text format (write, parse, version check).
- `qdq`: explicit-quantization Q/DQ insertion on onnx-graphsurgeon graphs.
"""
