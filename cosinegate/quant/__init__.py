"""INT8: ranges, Q/DQ graphs and TensorRT calibration caches, all made on the CPU with ONNX Runtime.

- `ranges`: batch-size- and order-invariant activation range collection (minmax, percentile, entropy).
- `cache`: TensorRT calibration cache text format (write, parse, version check).
- `qdq`: explicit-quantization Q/DQ insertion on onnx-graphsurgeon graphs.
- `calibset`: the class-balanced calibration images and their float feeds.
- `calibrate`: a checkpoint's calibration: ranges on its flat twin, its Q/DQ graphs and cache, a manifest.
- `accuracy`: INT8 against FP32 on ONNX Runtime (top-1, gate agreement per block) for each method.
- `names`: the file names and TensorRT releases a calibration folder uses.
"""
