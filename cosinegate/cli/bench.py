"""Latency, throughput, skip rate and executed MACs of an engine, an ONNX graph or a checkpoint.

    python deploy/bench.py --onnx model.onnx --backend onnxrt --threads 1 --json bench.json
    python deploy/bench.py --checkpoint CKPT --backend torch
    python deploy/bench.py --engine engines/jetson-orin/m-conditional-fp16-trt10.3.0-sm87.engine     # on the device
    python deploy/bench.py --checkpoint CKPT --backend onnxrt --compare-dense --data imagefolder --data-root DIR

Skip rate and executed MACs come from the model's own `gates` output on real test images: by
default the test split of the data the model was trained on (from --checkpoint, else from the
graph's or engine's metadata), or --data/--data-root; --random-input measures speed only.
TensorRT: GPU time from CUDA events and host wall time; on Jetson the tegrastats power summary,
nvpmodel mode and jetson_clocks state.
--compare-dense runs the dense baseline (the plain backbone with the same weights and no gates,
full ORT optimization; --dense-onnx or exported from --checkpoint), the flat twin (every gate
head computed), the statically pruned graph (masked form, policy auto: always-skipped blocks
removed) and the conditional graph with every gate forced on, beside the conditional graph, on
the same images, timed in turns (--rounds), and prints realized vs ideal speedup, both against
the gate-free dense graph and its MACs.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

MIN_DURATION = 0.01  # seconds of timed loop, at the least
MAX_SECONDS = 3600.0  # --duration and --warmup-seconds: an hour of timing is more than any figure needs
MAX_COUNT = 10_000_000  # --iterations, --warmup, --rounds, --batch, --threads, --test-images


def parse_args(argv=None):
    from cosinegate.cli import HelpFormatter, add_data_flags, add_version_flag, nonnegative_int, positive_float, positive_int

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--engine", help="TensorRT engine built by deploy/build_engine.py (backend trt)")
    p.add_argument("--onnx", help="graph from deploy/export_onnx.py (backend onnxrt)")
    p.add_argument("--checkpoint", help="checkpoint (backend torch; or the source of exports for onnxrt/--compare-dense)")
    p.add_argument("--backend", default=None, help="onnxrt | torch | trt (default: from the model given)")
    p.add_argument("--policy", default="auto", help="policy when exporting the conditional graph from --checkpoint")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--warmup", type=nonnegative_int, default=20)
    p.add_argument("--warmup-seconds", type=positive_float, default=None)
    p.add_argument("--iterations", type=positive_int, default=300)
    p.add_argument("--duration", type=positive_float, default=None, help="timed loop length in seconds (instead of --iterations)")
    add_data_flags(p)
    p.add_argument("--test-images", "--samples", dest="test_images", type=positive_int, default=300,
                   help="distinct test images cycled through (--samples is the old spelling)")
    p.add_argument("--random-input", action="store_true", help="random tensors: speed only, no skip statistics")
    p.add_argument("--inputs", help="Polygraphy inputs JSON (a bundle's inputs.json) as the images; no dataset or torch "
                                    "needed (default for --engine: the reference inputs its manifest or bundle names)")
    p.add_argument("--json", metavar="REPORT", help="write the JSON report here")
    p.add_argument("--csv", help="append one row per run to this CSV (default none)")
    p.add_argument("--plot", help="latency histogram PNG")
    p.add_argument("--compare-dense", action="store_true")
    p.add_argument("--rounds", type=positive_int, default=5,
                   help="--compare-dense: graphs are timed in turns, this many rounds of iterations/rounds each")
    p.add_argument("--dense-onnx", help="gate-free dense graph for --compare-dense (default: exported from --checkpoint, "
                                        "deploy/export_onnx.py --policy dense)")
    p.add_argument("--power", action="store_true", help="sample tegrastats during the timed loop (Jetson)")
    p.add_argument("--if-cost", action="store_true",
                   help="cost of a conditional: If chains (K = 0, 1, 3, 9) at the model's input size and each gated block "
                        "plain vs in its If, with the break-even block latency (--checkpoint CKPT or --onnx model.flat.onnx)")
    p.add_argument("--precision", default="fp16", help="--if-cost --backend trt: engine precision (fp32 | fp16)")
    p.add_argument("--if-cost-table", help="a --if-cost --json table of this model: the report adds per block its latency "
                                           "and If cost next to the break-even at the skip rate measured here (and "
                                           "--policy auto uses it when exporting from --checkpoint)")
    add_version_flag(p)
    return p.parse_args(argv)


def reference_inputs(engine, manifest):
    """The reference inputs an engine was checked with: its manifest's, or the bundle's beside results/."""
    named = manifest.get("reference_inputs")
    candidates = ([Path(named)] if named else []) + [Path(engine).resolve().parent.parent / "inputs.json"]
    return next((path for path in candidates if path.is_file()), None)


def batches_from_inputs(path, batch):
    """Batches of ``batch`` images from a Polygraphy inputs JSON (torch-free)."""
    import numpy as np
    from polygraphy.json import from_json

    from cosinegate.artifacts import read_json
    from cosinegate.errors import CosineGateError
    from cosinegate.graphmeta import INPUT

    fix = "pass a bundle's inputs.json (parity.py --save-reference writes one)"
    feeds = read_json(path, "inputs file", mapping=False)
    if not (isinstance(feeds, list) and feeds and all(isinstance(f, dict) and list(f) == [INPUT] and isinstance(f[INPUT], dict)
                                                      and f[INPUT].get("polygraphy_class") == "ndarray" for f in feeds)):
        raise CosineGateError(f"{path} is not a Polygraphy inputs JSON: a list of feeds holding one numpy '{INPUT}' array each "
                              f"(a pickled tensor or any other object is refused unread); {fix}.")
    try:
        arrays = [from_json(json.dumps(feed))[INPUT] for feed in feeds]  # numpy arrays only: np.load(allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - Polygraphy raises several types for damaged arrays
        raise CosineGateError(f"{path} holds an unreadable '{INPUT}' array ({type(exc).__name__}); {fix}.") from None
    shapes = {a.shape[1:] if isinstance(a, np.ndarray) and a.ndim == 4 else None for a in arrays}
    if any(not isinstance(a, np.ndarray) or a.dtype != np.float32 for a in arrays) or len(shapes) != 1 or None in shapes:
        raise CosineGateError(f"{path}: every '{INPUT}' must be a float32 N x 3 x S x S array of one shape; {fix}.")
    x = np.concatenate(arrays)
    if x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise CosineGateError(f"{path}: '{INPUT}' arrays are {list(x.shape[1:])}, not 3 x S x S; {fix}.")
    count = len(x) // batch * batch
    if count == 0:
        raise CosineGateError(f"{path} holds {len(x)} images, fewer than --batch {batch}; lower --batch.")
    return [np.ascontiguousarray(x[i : i + batch]) for i in range(0, count, batch)]


def engine_metadata(manifest, engine):
    """The graph metadata an engine manifest carries, checked like a graph's own ({} when it carries none)."""
    from cosinegate.errors import CosineGateError
    from cosinegate.graphmeta import metadata_problem

    meta = manifest.get("onnx_metadata", {})
    problem = "is not a mapping" if not isinstance(meta, dict) else metadata_problem(meta)
    if problem:
        raise CosineGateError(f"{engine}.json: onnx_metadata {problem}; rebuild the engine with deploy/build_engine.py.")
    return meta


def data_origin(args, meta):
    """The data the model was trained on: from --checkpoint, else from the graph's or engine's metadata."""
    from cosinegate.data.choice import DataOrigin

    if args.checkpoint:
        from cosinegate.training.checkpoint import load_checkpoint

        return DataOrigin.of_checkpoint(load_checkpoint(args.checkpoint))
    return DataOrigin.of_metadata(meta or {})


def make_batches(args, image_size, normalization, origin):
    """(batches, data record, labels) of test images at the model's size, normalized like its training, or
    (random tensors, None, None) with --random-input."""
    import numpy as np

    from cosinegate.data.augment import to_tensor
    from cosinegate.data.choice import choose_data

    if args.random_input:
        rng = np.random.default_rng(0)
        return [rng.standard_normal((args.batch, 3, image_size, image_size), dtype=np.float32) for _ in range(8)], None, None
    data = choose_data(origin, args.data, args.data_root)
    test = data.test
    count = min(args.test_images, len(test)) // args.batch * args.batch
    if count == 0:
        from cosinegate.errors import CosineGateError

        raise CosineGateError(f"--batch {args.batch} needs at least that many images; raise --test-images (now {args.test_images}).")
    x = to_tensor(test.images[:count], "cpu", normalization).numpy()
    return [np.ascontiguousarray(x[i : i + args.batch]) for i in range(0, count, args.batch)], data.record(), test.labels[:count]


def measure(backend, batches, args, table=None, mode=None, kinds=None, label=None):
    from cosinegate.bench.backends import time_backend
    from cosinegate.bench.report import gate_stats, summarize

    wall, gpu, gates = time_backend(backend, batches, args.warmup, args.warmup_seconds, args.iterations, args.duration)
    report = summarize(wall, gpu, args.batch)
    report["_wall"] = wall
    if table is not None and not args.random_input:
        full = [backend.run(b)[0]["gates"] for b in batches]  # every image once, for the statistics
        report.update(gate_stats(full, table, mode, kinds))
    elif table is not None:
        report["dense_macs"] = int(table.dense)
    return report


def main(argv=None):
    from cosinegate.artifacts import remove_stale
    from cosinegate.bench.report import check_csv_header
    from cosinegate.cli import check_output_files
    from cosinegate.errors import CosineGateError

    args = parse_args(argv)
    backend_name = args.backend or ("trt" if args.engine else "onnxrt" if args.onnx or args.if_cost else "torch")
    if backend_name not in ("onnxrt", "torch", "trt"):
        raise CosineGateError(f"unknown backend {backend_name!r}; choose onnxrt, torch or trt.")
    if args.batch < 1 or args.threads < 1 or args.rounds < 1 or (args.iterations < 1 and not args.duration):
        raise CosineGateError("--batch, --threads, --rounds and --iterations must be at least 1.")
    check_output_files({"checkpoint": args.checkpoint, "graph": args.onnx, "engine": args.engine, "inputs file": args.inputs,
                        "If cost table": args.if_cost_table}, json=args.json, csv=args.csv, plot=args.plot)
    if args.csv:
        check_csv_header(args.csv)
    for flag, value in (("--duration", args.duration), ("--warmup-seconds", args.warmup_seconds)):
        if value is not None and value > MAX_SECONDS:
            raise CosineGateError(f"{flag} {value:g} s is over the {MAX_SECONDS:g} s limit; give at most {MAX_SECONDS:g} s.")
    for flag, value in (("--iterations", args.iterations), ("--warmup", args.warmup), ("--rounds", args.rounds),
                        ("--batch", args.batch), ("--threads", args.threads), ("--test-images", args.test_images)):
        if value > MAX_COUNT:
            raise CosineGateError(f"{flag} {value} is over the limit of {MAX_COUNT}; give a smaller number.")
    if args.duration is not None and args.duration < MIN_DURATION:
        raise CosineGateError(f"--duration {args.duration:g} s is too short to time a run; give at least {MIN_DURATION} s "
                              "or use --iterations N.")
    if args.power and backend_name != "trt":
        raise CosineGateError("--power reads the Jetson power rails of an engine's target; use it with --engine on the device.")
    if args.if_cost:
        return if_cost(args, backend_name)
    if args.inputs and (args.data or args.random_input or args.compare_dense):
        raise CosineGateError("--inputs gives unlabelled images; drop --data/--random-input/--compare-dense (or --inputs).")
    remove_stale(tempfile.gettempdir(), "cg-bench.")  # what killed runs left (their pid is in the name)
    with tempfile.TemporaryDirectory(prefix=f"cg-bench.{os.getpid()}.") as tmp:
        return run_bench(args, backend_name, Path(tmp))


def run_bench(args, backend_name, workdir):
    """Measure, report and write; `workdir` holds the graphs made on the way."""
    import numpy as np

    from cosinegate.artifacts import atomic_write_json, input_record
    from cosinegate.bench import report as rep
    from cosinegate.bench.backends import OnnxrtBackend, TorchBackend, TrtBackend
    from cosinegate.errors import CosineGateError

    mode, table, kinds, meta, model_path, batches = "predictive", None, None, {}, None, None
    if backend_name == "trt":
        if not args.engine:
            raise CosineGateError("--backend trt needs --engine FILE (built by deploy/build_engine.py).")
        from cosinegate.trt.manifest import read_engine_manifest

        if not (args.inputs or args.data or args.random_input):
            args.inputs = reference_inputs(args.engine, read_engine_manifest(args.engine))
            if args.inputs is None:
                raise CosineGateError("no images for the engine: pass --inputs BUNDLE/inputs.json (the reference inputs), "
                                      "--data with a dataset, or --random-input (speed only).")
        if args.inputs:  # before TensorRT is needed, so a bad --inputs is said first
            batches = batches_from_inputs(args.inputs, args.batch)
        backend = TrtBackend(args.engine)
        meta = engine_metadata(backend.manifest, args.engine)
        model_path = args.engine
    elif backend_name == "torch":
        if not args.checkpoint:
            raise CosineGateError("--backend torch needs --checkpoint CKPT.")
        backend = TorchBackend(args.checkpoint, args.threads)
        from cosinegate.macs import model_mac_table

        table, mode, model_path = model_mac_table(backend.model), backend.model.mode, args.checkpoint
    else:
        model_path = args.onnx
        if model_path is None:
            if not args.checkpoint:
                raise CosineGateError("--backend onnxrt needs --onnx MODEL or --checkpoint CKPT (exported here).")
            from cosinegate.onnx import export_checkpoint

            model_path = workdir / "conditional.onnx"
            export_checkpoint(args.checkpoint, model_path, "conditional" if args.batch == 1 else "masked", args.batch,
                              policy=args.policy, if_cost_table=args.if_cost_table if args.policy == "auto" else None)
        backend = OnnxrtBackend(model_path, args.threads)
    if backend_name != "torch":
        if backend_name == "onnxrt":
            from cosinegate.bench.graphs import graph_info

            meta, table, kinds, _ = graph_info(model_path)
        elif meta:
            from cosinegate.macs import metadata_mac_table

            table = metadata_mac_table(meta)
            kinds = [b["kind"] for b in meta.get("blocks", [])]
        mode = meta.get("mode", "predictive")
        if backend.batch and backend.batch != args.batch:
            raise CosineGateError(f"the model has a static batch of {backend.batch}; pass --batch {backend.batch}.")
    data = labels = None  # the data record and labels, when test images are read
    if batches is None and args.inputs:
        batches = batches_from_inputs(args.inputs, args.batch)
    size = backend.model.image_size if backend_name == "torch" else meta.get("image_size")
    if batches is not None and size and tuple(batches[0].shape[2:]) != (size, size):
        raise CosineGateError(f"{args.inputs} holds {batches[0].shape[2]}x{batches[0].shape[3]} images but the model takes "
                              f"{size}x{size}; pass the inputs.json of this model's bundle.")
    if batches is None:
        from cosinegate.data.normalization import LEGACY_SOURCE, named
        from cosinegate.data.resize import refuse_other_size

        if backend_name == "torch":
            size, normalization = backend.model.image_size, backend.model.normalization
        else:
            size, normalization = meta.get("image_size", 32), meta.get("normalization") or named("cifar10", LEGACY_SOURCE)
        size = refuse_other_size(args.image_size, size, model_path)
        batches, data, labels = make_batches(args, size, normalization, data_origin(args, meta))
    sampler = None
    if args.power:
        from cosinegate.bench.tegrastats import TegrastatsSampler

        sampler = TegrastatsSampler()
        sampler.__enter__()
    try:
        result = measure(backend, batches, args, table, mode, kinds)
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    report = {"backend": backend_name, "model": str(model_path), "batch": args.batch, "threads": args.threads,
              "input": "random (speed only)" if args.random_input else f"reference inputs {args.inputs} ({len(batches) * args.batch} images)"
              if args.inputs else f"{data['source']} test images", "data": data,
              "device": rep.device_name(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "inputs": input_record(model=model_path, checkpoint=args.checkpoint), **result}
    wall = report.pop("_wall")
    if sampler:
        from cosinegate.bench.tegrastats import read_power_mode
        from cosinegate.trt.targets import load_target

        rails = ()
        if backend_name == "trt":
            rails = load_target(backend.manifest["target"], allow_path=False).total_power_rails
        # mean power over the sampled span, energy per image over the timed loop only
        report["power"] = sampler.summary(rails, images=len(wall) * args.batch, seconds=sum(wall) / 1e3)
        report["power_mode"] = read_power_mode()
    series = {f"{backend_name}": wall}  # replaced by the comparison's graphs (the conditional one included) below
    if args.if_cost_table:
        from cosinegate.bench.ifcost import block_rows

        if "skip_rate_per_block" not in report:
            raise CosineGateError("--if-cost-table compares measured skip rates with the table; drop --random-input.")
        report["if_cost_blocks"] = block_rows(args.if_cost_table, report["skip_rate_per_block"], kinds)
        print_block_rows(report["if_cost_blocks"])
    if args.compare_dense:
        from cosinegate.bench.compare import compare_dense

        report["compare_dense"], extra = compare_dense(args, model_path, report, batches, workdir, backend_name, labels=labels)
        series = {GRAPH_LABELS.get(name, name): ms for name, ms in extra.items()}
        print_table(report["compare_dense"])
    print(f"{backend_name} {report['input']}: mean {report['latency_ms']['mean']:.3f} ms, p50 {report['latency_ms']['p50']:.3f}, "
          f"p90 {report['latency_ms']['p90']:.3f}, p99 {report['latency_ms']['p99']:.3f}, {report['throughput']:.1f} img/s"
          + (f", skip rate {report['skip_rate']:.3f}, executed {report['executed_macs'] / 1e6:.2f}M / {report['dense_macs'] / 1e6:.2f}M MACs"
             if "skip_rate" in report else ""))
    if args.json:
        atomic_write_json(args.json, report)
    if args.csv:
        rep.append_csv(args.csv, rep.csv_row(report))
    if args.plot:
        c = report.get("compare_dense")
        speedups = None
        if c:
            dense_p50 = float(np.median(extra["dense"]))
            speedups = {GRAPH_LABELS.get(name, name): dense_p50 / float(np.median(ms)) for name, ms in extra.items() if name != "dense"}
        title = (f"{backend_name}, {args.threads} thread(s), batch {args.batch}: {Path(str(args.checkpoint or model_path)).name}"
                 f" ({report['device']})")
        rep.plot_histogram(args.plot, series, title, speedups, c["ideal_speedup"] if c else None)
    return 0


def if_cost(args, backend_name):
    """--if-cost: measure, print the table (and per gated block its latency next to its break-even), write --json."""
    from cosinegate.artifacts import atomic_write_json, input_record
    from cosinegate.bench import report as rep
    from cosinegate.bench.ifcost import measure_if_cost, model_graphs
    from cosinegate.errors import CosineGateError

    if backend_name == "onnxrt":
        from cosinegate.bench.backends import OnnxrtGraph

        def make_runner(model):
            return OnnxrtGraph(model, args.threads)
    elif backend_name == "trt":
        from cosinegate.trt.timing import TrtGraph

        def make_runner(model):
            return TrtGraph(model, args.precision)
    else:
        raise CosineGateError("--if-cost times ONNX graphs: use --backend onnxrt (here) or --backend trt (on the device).")
    if args.batch != 1:
        raise CosineGateError("--if-cost measures batch 1 (an If condition is one scalar); drop --batch.")
    flat, cond_all, skip_rates, kinds = model_graphs(args.checkpoint, args.onnx)
    bar = progress_bar(sum(k == "dynamic" or k in ("always_run", "always_skipped") for k in kinds), "blocks")
    table = measure_if_cost(make_runner, flat, cond_all, skip_rates, kinds, args.warmup, args.iterations, args.rounds,
                            progress=lambda i: bar.update())
    bar.close()
    table.update(backend=backend_name, threads=args.threads, precision=args.precision if backend_name == "trt" else "fp32",
                 device=rep.device_name(), time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                 inputs=input_record(model=args.onnx, checkpoint=args.checkpoint))
    print_if_cost(table)
    if args.json:
        atomic_write_json(args.json, table)
    return 0


def progress_bar(total, desc):
    """tqdm's bar where it is installed (the training extra); the device extra has none, and there a line per step."""
    try:
        from tqdm import tqdm
    except ImportError:
        import sys

        class Lines:
            done = 0

            def update(self):
                self.done += 1
                print(f"{desc}: {self.done}/{total}", file=sys.stderr)

            def close(self):
                pass

        return Lines()
    return tqdm(total=total, desc=desc, leave=False)


def print_if_cost(t):
    shape = "x".join(str(d) for d in t["input_shape"])
    print(f"If cost on {t['backend']} ({t['device']}, {t['threads']} thread(s)), input {shape}, median latency:")
    print(f"{'If nodes':>9s} {'us':>9s}")
    for k, us in zip(t["if_counts"], t["chain_latency_us"]):
        print(f"{k:9d} {us:9.1f}")
    print(f"cost per conditional (trivial branches): {t['trivial_cost_per_if_us']:.1f} us; break-even block latency: "
          + ", ".join(f"{v:.1f} us at skip rate {s}" for s, v in t["break_even_us"].items()))
    print_block_rows(t["blocks"])


def print_block_rows(blocks):
    if not blocks:
        return
    print(f"{'block':>5s} {'kind':>14s} {'skip':>6s} {'latency us':>10s} {'If cost us':>10s} {'saving us':>9s} "
          f"{'break-even us':>13s}  verdict")
    for b in blocks:
        skip = "" if b["skip_rate"] is None else f"{b['skip_rate']:.3f}"
        saving = f"{b['expected_saving_us']:.1f}" if "expected_saving_us" in b else ""
        even = f"{b['break_even_us']:.1f}" if "break_even_us" in b else ""
        print(f"{b['block']:5d} {b['kind']:>14s} {skip:>6s} {b['latency_us']:10.1f} {b['if_cost_us']:10.1f} {saving:>9s} "
              f"{even:>13s}  {b.get('verdict', '')}")


GRAPH_LABELS = {
    "dense": "dense (no gates)",
    "flat_twin": "flat twin (all gate heads)",
    "forced_on": "conditional, gates forced on",
    "static_pruned": "statically pruned",
    "conditional": "conditional (portable If)",
    "ort_native": "ORT-native conditional",
    "ort_native_forced_on": "ORT-native, gates forced on",
}


def print_table(c):
    s = c["speedup_statistic"]
    rows = [("dense (backbone, no gates)", c["dense_latency_ms"], c["dense_macs"], 1.0)]
    if "flat_twin_latency_ms" in c:
        rows.append(("flat twin (every gate head computed)", c["flat_twin_latency_ms"], c["flat_twin_macs"],
                     c["flat_twin_speedup"]))
    if "static_pruned_latency_ms" in c:
        rows.append(("static pruned (masked auto)", c["static_pruned_latency_ms"], c["static_pruned_macs"],
                     c["static_pruned_speedup"]))
    rows.append((f"conditional ({c['conditional_if_count']} If)", c["conditional_latency_ms"], c["executed_macs"],
                 c["realized_speedup"]))
    rows.append(("conditional, all gates forced on", c["forced_on_latency_ms"], c["flat_twin_macs"],
                 c["dense_latency_ms"][s] / c["forced_on_latency_ms"][s]))
    if "ort_native_latency_ms" in c:
        rows.append(("ORT-native conditional (NCHWc in If)", c["ort_native_latency_ms"], c["executed_macs"],
                     c["ort_native_realized_speedup"]))
        rows.append(("ORT-native, all gates forced on", c["ort_native_forced_on_latency_ms"], c["flat_twin_macs"],
                     c["dense_latency_ms"][s] / c["ort_native_forced_on_latency_ms"][s]))
    print(f"{'graph':38s} {'p50 ms':>8s} {'mean ms':>8s} {'MACs (M)':>9s} {'speedup':>8s}")
    for name, lat, macs, speed in rows:
        print(f"{name:38s} {lat['p50']:8.3f} {lat['mean']:8.3f} {macs / 1e6:9.2f} {speed:8.3f}")
    print(f"ideal speedup {c['ideal_speedup']:.3f}, realized {c['realized_speedup']:.3f}, realized/ideal "
          f"{c['realized_over_ideal']:.3f}, forced-on overhead {100 * c['forced_on_overhead']:+.1f}%")
    if "selection" in c:
        sel = c["selection"]
        print("selection (build_engine.py --select rule): " + ", ".join(
            f"{n} {s['latency_ms']['p50']:.3f} ms acc {s['accuracy']:.4f}" for n, s in sel["candidates"].items())
            + f" -> {sel['chosen']}")
    if "ort_native_latency_ms" in c:
        print(f"ORT-native: realized {c['ort_native_realized_speedup']:.3f}, realized/ideal "
              f"{c['ort_native_realized_over_ideal']:.3f}, forced-on overhead {100 * c['ort_native_forced_on_overhead']:+.1f}%")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
