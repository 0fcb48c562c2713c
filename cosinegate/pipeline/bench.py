"""``bench(settings)``: latency, throughput, skip rate and executed MACs of an engine, an ONNX graph or a checkpoint
(with the dense comparison, power and If-cost rows when asked), or the If-cost table of a model."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cosinegate.errors import CosineGateError
from cosinegate.graphmeta import block_kinds

MIN_DURATION = 0.01  # seconds of timed loop, at the least
MAX_SECONDS = 3600.0  # duration and warmup_seconds: an hour of timing is more than any figure needs
MAX_COUNT = 10_000_000  # iterations, warmup, rounds, batch, threads, test_images
GRAPH_LABELS = {
    "dense": "dense (no gates)",
    "flat_twin": "flat twin (all gate heads)",
    "forced_on": "conditional, gates forced on",
    "static_pruned": "statically pruned",
    "conditional": "conditional (portable If)",
    "ort_native": "ORT-native conditional",
    "ort_native_forced_on": "ORT-native, gates forced on",
}


@dataclass(frozen=True)
class BenchSettings:
    """What to time (engine, onnx or checkpoint), on what (test images, inputs or random tensors), how, and where
    the report goes (json, csv, plot)."""

    engine: Optional[str] = None
    onnx: Optional[str] = None
    checkpoint: Optional[str] = None
    backend: Optional[str] = None  # onnxrt | torch | trt; None: from the model given
    policy: str = "auto"  # when exporting the conditional graph from the checkpoint
    batch: int = 1
    threads: int = 1
    warmup: int = 20
    warmup_seconds: Optional[float] = None
    iterations: int = 300
    duration: Optional[float] = None  # timed loop length in seconds, instead of iterations
    data: Optional[str] = None
    data_root: Optional[str] = None
    image_size: Optional[int] = None
    test_images: int = 300
    random_input: bool = False
    inputs: Optional[str] = None  # a Polygraphy inputs JSON as the images
    json: Optional[str] = None
    csv: Optional[str] = None
    plot: Optional[str] = None
    compare_dense: bool = False
    rounds: int = 5
    dense_onnx: Optional[str] = None
    power: bool = False
    if_cost: bool = False  # the If-cost table instead of a bench
    precision: str = "fp16"  # if_cost on trt: engine precision
    if_cost_table: Optional[str] = None


@dataclass
class BenchResult:
    """The report written to ``json`` (the If-cost table when ``if_cost``)."""

    report: dict
    if_cost: bool = False


def bench(settings, log=print):
    """Check ``settings``, then measure (or time the If cost); a BenchResult. Writes json/csv/plot when given."""
    import os
    import tempfile

    from cosinegate.artifacts import remove_stale
    from cosinegate.bench.report import check_csv_header

    s = settings
    backend_name = s.backend or ("trt" if s.engine else "onnxrt" if s.onnx or s.if_cost else "torch")
    if backend_name not in ("onnxrt", "torch", "trt"):
        raise CosineGateError(f"unknown backend {backend_name!r}; choose onnxrt, torch or trt.")
    if s.batch < 1 or s.threads < 1 or s.rounds < 1 or (s.iterations < 1 and not s.duration):
        raise CosineGateError("--batch, --threads, --rounds and --iterations must be at least 1.")
    if s.csv:
        check_csv_header(s.csv)
    for flag, value in (("--duration", s.duration), ("--warmup-seconds", s.warmup_seconds)):
        if value is not None and value > MAX_SECONDS:
            raise CosineGateError(f"{flag} {value:g} s is over the {MAX_SECONDS:g} s limit; give at most {MAX_SECONDS:g} s.")
    for flag, value in (("--iterations", s.iterations), ("--warmup", s.warmup), ("--rounds", s.rounds),
                        ("--batch", s.batch), ("--threads", s.threads), ("--test-images", s.test_images)):
        if value > MAX_COUNT:
            raise CosineGateError(f"{flag} {value} is over the limit of {MAX_COUNT}; give a smaller number.")
    if s.duration is not None and s.duration < MIN_DURATION:
        raise CosineGateError(f"--duration {s.duration:g} s is too short to time a run; give at least {MIN_DURATION} s "
                              "or use --iterations N.")
    if s.engine and Path(s.engine).suffix.lower() == ".onnx":
        raise CosineGateError(f"--engine {s.engine} is an ONNX graph, not a TensorRT engine; time it with --onnx {s.engine} "
                              "(ONNX Runtime), or build the engine with build-engine.")
    if s.power and backend_name != "trt":
        raise CosineGateError("--power reads the Jetson power rails of an engine's target; use it with --engine on the device.")
    if s.if_cost:
        return BenchResult(if_cost(s, backend_name, log), if_cost=True)
    if s.inputs and (s.data or s.random_input or s.compare_dense):
        raise CosineGateError("--inputs gives unlabelled images; drop --data/--random-input/--compare-dense (or --inputs).")
    remove_stale(tempfile.gettempdir(), "cg-bench.")  # what killed runs left (their pid is in the name)
    with tempfile.TemporaryDirectory(prefix=f"cg-bench.{os.getpid()}.") as tmp:
        return BenchResult(run_bench(s, backend_name, Path(tmp), log))


def run_bench(s, backend_name, workdir, log=print):
    """Measure and write the report (json, csv, plot); `workdir` holds the graphs made on the way."""
    import numpy as np

    from cosinegate.artifacts import atomic_write_json, input_record
    from cosinegate.bench import report as rep
    from cosinegate.bench.backends import OnnxrtBackend, TorchBackend, TrtBackend

    table, kinds, meta, model_path, batches, inputs = None, None, {}, None, None, s.inputs
    if backend_name == "trt":
        if not s.engine:
            raise CosineGateError("--backend trt needs --engine FILE (built by cosinegate build-engine).")
        from cosinegate.trt.manifest import read_engine_manifest

        if not (inputs or s.data or s.random_input):
            inputs = reference_inputs(s.engine, read_engine_manifest(s.engine))
            if inputs is None:
                raise CosineGateError("no images for the engine: pass --inputs BUNDLE/inputs.npz (the reference images), "
                                      "--data with a dataset, or --random-input (speed only).")
            log(f"images: {inputs} (the engine's reference inputs)")
        if inputs:  # before TensorRT is needed, so a bad --inputs is said first
            batches = batches_from_inputs(inputs, s.batch)
        backend = TrtBackend(s.engine)
        meta = engine_metadata(backend.manifest, s.engine)
        model_path = s.engine
    elif backend_name == "torch":
        if not s.checkpoint:
            raise CosineGateError("--backend torch needs --checkpoint CKPT." if s.backend else
                                  "bench needs a model: --checkpoint CKPT, --onnx FILE or --engine FILE.")
        backend = TorchBackend(s.checkpoint, s.threads)
        from cosinegate.macs import model_mac_table

        table, model_path = model_mac_table(backend.model), s.checkpoint
    else:
        model_path = s.onnx
        if model_path is None:
            if not s.checkpoint:
                raise CosineGateError("--backend onnxrt needs --onnx MODEL or --checkpoint CKPT (exported here).")
            from cosinegate.onnx import export_checkpoint

            model_path = workdir / "conditional.onnx"
            export_checkpoint(s.checkpoint, model_path, "conditional" if s.batch == 1 else "masked", s.batch,
                              policy=s.policy, if_cost_table=s.if_cost_table if s.policy == "auto" else None)
        backend = OnnxrtBackend(model_path, s.threads)
    if backend_name != "torch":
        if backend_name == "onnxrt":
            from cosinegate.bench.graphs import graph_info

            meta, table, kinds = graph_info(model_path)[:3]
        elif meta:
            from cosinegate.macs import graph_mac_table

            table = graph_mac_table(meta)
            kinds = block_kinds(meta)
        if backend.batch and backend.batch != s.batch:
            raise CosineGateError(f"the model has a static batch of {backend.batch}; pass --batch {backend.batch}.")
    data = labels = None  # the data record and labels, when test images are read
    if batches is None and inputs:
        batches = batches_from_inputs(inputs, s.batch)
    size = backend.model.image_size if backend_name == "torch" else meta.get("image_size")
    if batches is not None and size and tuple(batches[0].shape[2:]) != (size, size):
        raise CosineGateError(f"{inputs} holds {batches[0].shape[2]}x{batches[0].shape[3]} images but the model takes "
                              f"{size}x{size}; pass the inputs.npz of this model's bundle.")
    if batches is None:
        from cosinegate.data.normalization import LEGACY_SOURCE, named
        from cosinegate.data.resize import refuse_other_size

        if backend_name == "torch":
            size, normalization = backend.model.image_size, backend.model.normalization
        else:
            size, normalization = meta.get("image_size", 32), meta.get("normalization") or named("cifar10", LEGACY_SOURCE)
        size = refuse_other_size(s.image_size, size, model_path)
        batches, data, labels = make_batches(s, size, normalization, data_origin(s.checkpoint, meta), log)
    sampler = None
    if s.power:
        from cosinegate.bench.tegrastats import TegrastatsSampler
        from cosinegate.manifests import engine_manifest_path
        from cosinegate.trt.manifest import engine_power_rails

        rails, detail = engine_power_rails(backend.manifest, engine_manifest_path(model_path))  # --power: --engine only
        sampler = TegrastatsSampler()
        sampler.__enter__()
    try:
        result = measure(backend, batches, s, table, kinds, log)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    report = {"backend": backend_name, "model": str(model_path), "batch": s.batch, "threads": s.threads,
              "input": "random (speed only)" if s.random_input else f"reference inputs {inputs} ({len(batches) * s.batch} images)"
              if inputs else f"{data['source']} test images", "data": data,
              "device": rep.device_name(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "inputs": input_record(model=model_path, checkpoint=s.checkpoint), **result}
    wall = report.pop("_wall")
    if sampler:
        from cosinegate.bench.tegrastats import read_power_mode

        # mean power over the sampled span, energy per image over the timed loop only
        report["power"] = sampler.summary(rails, images=len(wall) * s.batch, seconds=sum(wall) / 1e3, detail=detail)
        report["power_mode"] = read_power_mode()
    series = {f"{backend_name}": wall}  # replaced by the comparison's graphs (the conditional one included) below
    if s.if_cost_table:
        from cosinegate.bench.ifcost import block_rows

        if "skip_rate_per_block" not in report:
            raise CosineGateError("--if-cost-table compares measured skip rates with the table; drop --random-input.")
        report["if_cost_blocks"] = block_rows(s.if_cost_table, report["skip_rate_per_block"], kinds)
    if s.compare_dense:
        from cosinegate.bench.compare import compare_dense

        report["compare_dense"], extra = compare_dense(
            model_path, report, batches, workdir, backend_name, checkpoint=s.checkpoint, dense_onnx=s.dense_onnx,
            policy=s.policy, batch=s.batch, threads=s.threads, warmup=s.warmup, iterations=s.iterations,
            duration=s.duration, rounds=s.rounds, log=log, labels=labels)
        series = {GRAPH_LABELS.get(name, name): ms for name, ms in extra.items()}
    if s.json:
        atomic_write_json(s.json, report)
    if s.csv:
        rep.append_csv(s.csv, rep.csv_row(report))
    if s.plot:
        c = report.get("compare_dense")
        speedups = None
        if c:
            dense_p50 = float(np.median(extra["dense"]))
            speedups = {GRAPH_LABELS.get(name, name): dense_p50 / float(np.median(ms)) for name, ms in extra.items() if name != "dense"}
        title = (f"{backend_name}, {s.threads} thread(s), batch {s.batch}: {Path(str(s.checkpoint or model_path)).name}"
                 f" ({report['device']})")
        rep.plot_histogram(s.plot, series, title, speedups, c["ideal_speedup"] if c else None)
    return report


def if_cost(s, backend_name, log=print):
    """The If-cost table (and per gated block its latency next to its break-even), written to ``s.json``."""
    from cosinegate.artifacts import atomic_write_json, input_record
    from cosinegate.bench import report as rep
    from cosinegate.bench.ifcost import measure_if_cost, model_graphs

    if backend_name == "onnxrt":
        from cosinegate.bench.backends import OnnxrtGraph

        def make_runner(model):
            return OnnxrtGraph(model, s.threads)
    elif backend_name == "trt":
        from cosinegate.trt.timing import TrtGraph

        def make_runner(model):
            return TrtGraph(model, s.precision)
    else:
        raise CosineGateError("--if-cost times ONNX graphs: use --backend onnxrt (here) or --backend trt (on the device).")
    if s.batch != 1:
        raise CosineGateError("--if-cost measures batch 1 (an If condition is one scalar); drop --batch.")
    flat, cond_all, skip_rates, kinds = model_graphs(s.checkpoint, s.onnx)
    from cosinegate.progress import bar

    native = native_if_graphs(flat, s.threads) if backend_name == "onnxrt" else None
    with bar(log, total=sum(k == "dynamic" or k in ("always_run", "always_skipped") for k in kinds), desc="blocks",
             unit="block") as blocks:
        table = measure_if_cost(make_runner, flat, cond_all, skip_rates, kinds, s.warmup, s.iterations, s.rounds,
                                progress=lambda i: blocks.update(), native=native)
    table.update(backend=backend_name, threads=s.threads, precision=s.precision if backend_name == "trt" else "fp32",
                 device=rep.device_name(), time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                 inputs=input_record(model=s.onnx, checkpoint=s.checkpoint))
    if s.json:
        atomic_write_json(s.json, table)
    return table


def native_if_graphs(flat, threads):
    """native(index) -> (the gate-free network, the same with block ``index`` alone gated in its If), both in ONNX
    Runtime's own form (cosinegate.onnx.ort_native): what an If costs on the graph this runtime deploys."""
    from cosinegate.onnx.export import get_metadata
    from cosinegate.onnx.ort_native import ort_native_conditional

    gated = [i for i, kind in enumerate(block_kinds(get_metadata(flat))) if kind == "gated"]
    base = []

    def native(index):
        if not base:
            base.append(ort_native_conditional(flat, "dense", threads=threads))
        others = [i for i in gated if i != index]
        return base[0], ort_native_conditional(flat, "conditional-all", threads=threads, plain=others)

    return native


def reference_inputs(engine, manifest):
    """The reference inputs an engine was checked with: its manifest's (a board build names a file of its bundle,
    beside results/; a desktop build its own absolute path), else the bundle's inputs.npz or inputs.json."""
    from cosinegate.trt.manifest import bundle_member

    named = manifest.reference_inputs
    if named is not None and not isinstance(named, str):
        raise CosineGateError(f"engine manifest {engine}.json names reference inputs {str(named)[:60]!r}, not a file; "
                              "pass --inputs BUNDLE/inputs.npz, or rebuild the engine.")
    bundle = Path(engine).resolve().parent.parent
    candidates = [bundle / "inputs.npz", bundle / "inputs.json"]
    if named and Path(named).is_absolute():
        candidates.insert(0, Path(named))
    elif named:
        try:
            candidates.insert(0, bundle_member(bundle, named, "reference inputs"))
        except FileNotFoundError:  # an engine built before the name was the bundle's (a desktop path): the defaults
            pass
        except CosineGateError:
            raise CosineGateError(f"engine manifest {engine}.json names reference inputs {named[:60]!r}, not a file of its "
                                  "bundle; pass --inputs BUNDLE/inputs.npz, or rebuild the engine.") from None
    return next((path for path in candidates if path.is_file()), None)


def batches_from_inputs(path, batch):
    """Batches of ``batch`` images from a bundle's inputs.npz (uint8 images, made into float feeds as the bundle's
    check_parity.py does) or a Polygraphy inputs JSON (torch-free)."""
    import numpy as np
    from polygraphy.json import from_json

    from cosinegate.artifacts import read_json
    from cosinegate.graphmeta import INPUT
    from cosinegate.parity.compare import polygraphy_json

    fix = "pass a bundle's inputs.npz, or a Polygraphy inputs JSON (cosinegate parity --save-reference writes one)"
    if Path(path).suffix == ".npz":
        from cosinegate.parity.compare import saved_feeds

        feeds = saved_feeds(path)
        x = np.concatenate([feed[INPUT] for feed in feeds])
        return batches_of(x, batch, path)
    feeds = read_json(path, "inputs file", mapping=False)
    if not (isinstance(feeds, list) and feeds and all(isinstance(f, dict) and list(f) == [INPUT] and isinstance(f[INPUT], dict)
                                                      and f[INPUT].get("polygraphy_class") == "ndarray" for f in feeds)):
        raise CosineGateError(f"{path} is not a Polygraphy inputs JSON: a list of feeds holding one numpy '{INPUT}' array each "
                              f"(a pickled tensor or any other object is refused unread); {fix}.")
    text, _ = polygraphy_json(path, "inputs file")  # every array a .npy declaring what it holds, before Polygraphy decodes it
    try:
        arrays = [feed[INPUT] for feed in from_json(text)]  # numpy arrays only: np.load(allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - Polygraphy raises several types for damaged arrays
        raise CosineGateError(f"{path} holds an unreadable '{INPUT}' array ({type(exc).__name__}); {fix}.") from None
    shapes = {a.shape[1:] if isinstance(a, np.ndarray) and a.ndim == 4 else None for a in arrays}
    if any(not isinstance(a, np.ndarray) or a.dtype != np.float32 for a in arrays) or len(shapes) != 1 or None in shapes:
        raise CosineGateError(f"{path}: every '{INPUT}' must be a float32 N x 3 x S x S array of one shape; {fix}.")
    x = np.concatenate(arrays)
    if x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise CosineGateError(f"{path}: '{INPUT}' arrays are {list(x.shape[1:])}, not 3 x S x S; {fix}.")
    return batches_of(x, batch, path)


def batches_of(x, batch, path):
    """Whole batches of ``batch`` images of the float array ``x`` (read from ``path``)."""
    import numpy as np

    count = len(x) // batch * batch
    if count == 0:
        raise CosineGateError(f"{path} holds {len(x)} images, fewer than --batch {batch}; lower --batch.")
    return [np.ascontiguousarray(x[i : i + batch]) for i in range(0, count, batch)]


def engine_metadata(manifest, engine):
    """The graph metadata an EngineManifest carries, checked like a graph's own ({} when it carries none)."""
    from cosinegate.graphmeta import metadata_problem

    meta = {} if manifest.onnx_metadata is None else manifest.onnx_metadata
    problem = "is not a mapping" if not isinstance(meta, dict) else metadata_problem(meta)
    if problem:
        raise CosineGateError(f"{engine}.json: onnx_metadata {problem}; rebuild the engine with cosinegate build-engine.")
    return meta


def data_origin(checkpoint, meta):
    """The data the model was trained on: from ``checkpoint``, else from the graph's or engine's metadata."""
    from cosinegate.data.choice import DataOrigin

    if checkpoint:
        from cosinegate.training.checkpoint import load_checkpoint

        return DataOrigin.of_checkpoint(load_checkpoint(checkpoint))
    return DataOrigin.of_metadata(meta or {})


def make_batches(s, image_size, normalization, origin, log=print):
    """(batches, data record, labels) of test images at the model's size, normalized like its training, or
    (random tensors, None, None) with ``s.random_input``."""
    import numpy as np

    from cosinegate.data.augment import to_tensor
    from cosinegate.data.choice import choose_data

    if s.random_input:
        rng = np.random.default_rng(0)
        return [rng.standard_normal((s.batch, 3, image_size, image_size), dtype=np.float32) for _ in range(8)], None, None
    data = choose_data(origin, s.data, s.data_root, log=log)
    test = data.test
    count = min(s.test_images, len(test)) // s.batch * s.batch
    if count == 0:
        raise CosineGateError(f"--batch {s.batch} needs at least that many images; raise --test-images (now {s.test_images}).")
    x = to_tensor(test.images[:count], "cpu", normalization).numpy()
    return [np.ascontiguousarray(x[i : i + s.batch]) for i in range(0, count, s.batch)], data.record(), test.labels[:count]


def measure(backend, batches, s, table=None, kinds=None, log=None):
    """Time ``backend`` on ``batches`` as ``s`` says; with a MAC ``table``, the skip statistics of every image.
    Progress bars (timed runs, then the statistics pass) follow ``log`` (cosinegate.progress)."""
    from cosinegate.bench.backends import time_backend
    from cosinegate.bench.report import gate_stats, summarize
    from cosinegate.progress import bar

    with bar(log, total=None if s.duration else s.iterations, desc="timing", unit="run") as runs:
        wall, gpu, gates = time_backend(backend, batches, s.warmup, s.warmup_seconds, s.iterations, s.duration,
                                        tick=runs.update)
    report = summarize(wall, gpu, s.batch)
    report["_wall"] = wall
    if table is not None and not s.random_input:
        # every image once, for the statistics
        full = [backend.run(b)[0]["gates"] for b in bar(log, batches, desc="skip statistics", unit="batch")]
        report.update(gate_stats(full, table, kinds))
    elif table is not None:
        report["dense_macs"] = int(table.dense)
    return report
