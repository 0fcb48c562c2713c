"""One runner per backend: PyTorch (a checkpoint), ONNX Runtime (an .onnx graph), TensorRT (an .engine).

Every runner is built from a path (or the object itself) and options, is used as a context manager
(``with OnnxRuntimeRunner(path) as runner: runner.infer({"input": x})``), returns ``{name: numpy array}``
with the toolkit's tensor names (cosinegate.graphmeta: input, logits, gates) and gives a Polygraphy runner
for the Comparator (``runner.polygraphy()``). The modules import their backend on first use: importing
``cosinegate.runtime.onnxruntime_backend`` or ``cosinegate.runtime.tensorrt_backend`` needs neither torch,
ONNX Runtime nor TensorRT (the board imports them on Python 3.8 without torch).
"""
