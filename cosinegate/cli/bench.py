"""Latency, throughput, skip rate and executed MACs of an engine, an ONNX graph or a checkpoint.

    cosinegate bench --onnx model.onnx --backend onnxrt --threads 1 --json bench.json
    cosinegate bench --checkpoint CKPT --backend torch
    cosinegate bench --engine engines/jetson-orin/m-conditional-fp16-trt10.3.0-sm87.engine     # on the device
    cosinegate bench --checkpoint CKPT --backend onnxrt --compare-dense --data imagefolder --data-root DIR

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


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_device_flags, add_flag,
                                     add_report_flags, add_version_flag, nonnegative_int, positive_float, positive_int)
    from cosinegate.graphmeta import BLOCK_POLICIES

    p = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    model = add_checkpoint_flags(p, note="the model measured: --checkpoint (backend torch; or the source of exports for "
                                         "onnxrt/--compare-dense), --onnx or --engine")
    model.add_argument("--engine", help="TensorRT engine built by cosinegate build-engine (backend trt)")
    model.add_argument("--onnx", help="graph from cosinegate export (backend onnxrt)")
    p.add_argument("--backend", default=None, help="onnxrt | torch | trt (default: from the model given)")
    p.add_argument("--policy", default="auto", choices=BLOCK_POLICIES, help="policy when exporting the conditional graph "
                   "from --checkpoint")
    p.add_argument("--batch", type=positive_int, default=1, help="images per run (the model's static batch)")
    add_device_flags(p, device=None, threads=1)
    p.add_argument("--warmup", type=nonnegative_int, default=20, help="untimed runs before the timed loop")
    p.add_argument("--warmup-seconds", type=positive_float, default=None, help="untimed seconds before the timed loop (instead "
                                                                               "of --warmup)")
    p.add_argument("--iterations", type=positive_int, default=300, help="timed runs")
    p.add_argument("--duration", type=positive_float, default=None, help="timed loop length in seconds (instead of --iterations)")
    add_data_flags(p, subset=False)
    add_flag(p, "--test-images", "--samples", type=positive_int, default=300, metavar="N",
             help="distinct test images cycled through (--samples is the old spelling)")
    p.add_argument("--random-input", action="store_true", help="random tensors: speed only, no skip statistics")
    p.add_argument("--inputs", help="a bundle's inputs.npz (uint8 reference images) or a Polygraphy inputs JSON as the images; no dataset or torch "
                                    "needed (default for --engine: the reference inputs its manifest or bundle names)")
    add_report_flags(p, "the measurement: latency, throughput, skip rate, executed MACs (and power, --compare-dense, "
                        "--if-cost results when asked)", verbosity=True)
    p.add_argument("--csv", help="append one row per run to this CSV (default none)")
    p.add_argument("--plot", help="latency histogram PNG")
    p.add_argument("--compare-dense", action="store_true", help="also time the dense, flat, pruned and forced-on graphs in turns "
                                                                "with the conditional one (see above)")
    p.add_argument("--rounds", type=positive_int, default=5,
                   help="--compare-dense: graphs are timed in turns, this many rounds of iterations/rounds each")
    p.add_argument("--dense-onnx", help="gate-free dense graph for --compare-dense (default: exported from --checkpoint, "
                                        "cosinegate export --policy dense)")
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


def main(argv=None):
    from dataclasses import fields

    from cosinegate.cli import check_files, command_log
    from cosinegate.pipeline.bench import BenchSettings, bench

    args = parse_args(argv)
    check_files({"checkpoint": args.checkpoint, "ONNX file": args.onnx, "engine": args.engine, "inputs file": args.inputs,
                "If cost table": args.if_cost_table}, json=args.json, csv=args.csv, plot=args.plot)
    result = bench(BenchSettings(**{f.name: getattr(args, f.name) for f in fields(BenchSettings)}), log=command_log(args))
    if result.if_cost:
        print_if_cost(result.report)
    else:
        print_report(result.report)
    return 0


def print_report(report):
    """The If-cost rows and the dense comparison when measured, then the bench's summary line."""
    if "if_cost_blocks" in report:
        print_block_rows(report["if_cost_blocks"])
    if "compare_dense" in report:
        print_table(report["compare_dense"])
    print(f"{report['backend']} {report['input']}: mean {report['latency_ms']['mean']:.3f} ms, p50 {report['latency_ms']['p50']:.3f}, "
          f"p90 {report['latency_ms']['p90']:.3f}, p99 {report['latency_ms']['p99']:.3f}, {report['throughput']:.1f} img/s"
          + (f", skip rate {report['skip_rate']:.3f}, executed {report['executed_macs'] / 1e6:.2f}M / {report['dense_macs'] / 1e6:.2f}M MACs"
             if "skip_rate" in report else ""))
    if "power" in report:
        p = report["power"]
        per_image = "" if p["energy_per_image_j"] is None else f", {p['energy_per_image_j'] * 1e3:.2f} mJ per image"
        print(f"power: {p['total_mean_w']:.2f} W ({' + '.join(p['rails_mean_mw'])}, {p['samples']} tegrastats samples)"
              + per_image + "".join(f"; {rail} {mw / 1e3:.2f} W" for rail, mw in p.get("detail_mean_mw", {}).items()))


def print_if_cost(t):
    shape = "x".join(str(d) for d in t["input_shape"])
    form = {"runtime-native": "the runtime's own conditional graph", "portable": "the portable If"}.get(t.get("if_form"), "the portable If")
    print(f"If cost on {t['backend']} ({t['device']}, {t['threads']} thread(s)), input {shape}, blocks priced in {form}, median latency:")
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


def _overhead(value):
    return "n/a (no If to force)" if value is None else f"{100 * value:+.1f}%"


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
    if c["forced_on_latency_ms"] is not None:
        rows.append(("every gated block an If, all forced on", c["forced_on_latency_ms"], c["flat_twin_macs"],
                     c["dense_latency_ms"][s] / c["forced_on_latency_ms"][s]))
    if "ort_native_latency_ms" in c:
        rows.append(("ORT-native conditional (ORT kernels in If)", c["ort_native_latency_ms"], c["executed_macs"],
                     c["ort_native_realized_speedup"]))
        if c["ort_native_forced_on_latency_ms"] is not None:
            rows.append(("ORT-native, every gated If forced on", c["ort_native_forced_on_latency_ms"], c["flat_twin_macs"],
                         c["dense_latency_ms"][s] / c["ort_native_forced_on_latency_ms"][s]))
    print(f"{'graph':38s} {'p50 ms':>8s} {'mean ms':>8s} {'MACs (M)':>9s} {'speedup':>8s}")
    for name, lat, macs, speed in rows:
        print(f"{name:38s} {lat['p50']:8.3f} {lat['mean']:8.3f} {macs / 1e6:9.2f} {speed:8.3f}")
    print(f"ideal speedup {c['ideal_speedup']:.3f}, realized {c['realized_speedup']:.3f}, realized/ideal "
          f"{c['realized_over_ideal']:.3f}, forced-on overhead {_overhead(c['forced_on_overhead'])}")
    if "selection" in c:
        from cosinegate.bench.candidates import selection_lines

        print("selection (build-engine --select's rule):")
        print("\n".join(selection_lines(c["selection"])))
    if "ort_native_latency_ms" in c:
        print(f"ORT-native: realized {c['ort_native_realized_speedup']:.3f}, realized/ideal "
              f"{c['ort_native_realized_over_ideal']:.3f}, forced-on overhead {_overhead(c['ort_native_forced_on_overhead'])}")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
