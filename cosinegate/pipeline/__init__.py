"""The deploy pipeline as a library: checkpoint -> ONNX forms -> calibration -> reference -> selection -> engine or
device bundle, the board's build from a bundle, and the bench.

- ``plan``: what a deploy is asked (DeploySettings), what this host and target allow (Target), what the stages made
  (Artifacts)
- ``stages``: the stages run in a work folder (work_folder, finish_work) and reused by input hash
- ``deploy``: ``deploy(settings)``, the one entry point of build-engine
- ``bundle``: the device bundle written where no engine can be built
- ``ort_target``: the cpu-onnxruntime target: the ORT-native graph built and checked here, for this CPU
- ``engine``: engines built here with Polygraphy, their manifests, parity and selection
- ``board``: the engine built from a bundle on the device
- ``bench``: ``bench(settings)``, the bench of an engine, graph or checkpoint (or the If-cost table of a model)
- ``int8_check``: the INT8 preview on ONNX Runtime (qdq_preview), a failed one's measured advice (every calibration method previewed) and --require-int8-pass
- ``parity_check``: ``check_parity(settings)``, a graph against its checkpoint; ``calibration``: ``calibrate_checkpoint(settings)``

The board path (deploy with a bundle, bench of an engine) imports no torch and runs on Python 3.8.
"""
