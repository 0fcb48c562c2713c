"""Export a CosineGate checkpoint to ONNX (plus a <out>.json manifest).

    cosinegate export --checkpoint runs/balanced/best.pt --out model.onnx
    cosinegate export --checkpoint CKPT --out masked.onnx --form masked --batch 32
    cosinegate export --checkpoint CKPT --out compact.onnx --form compact --batch 8
    cosinegate export --checkpoint CKPT --out flat.onnx --form flat
    cosinegate export --checkpoint CKPT --out onnx/ --form masked      # writes onnx/model.masked.onnx

Forms: `conditional` (default; batch 1; one ONNX If per dynamic block, so a skipped
block is not computed), `masked` (any batch; every block computed, selected per
sample: it saves nothing; the only form for paper-mode gates, and INT8 from a
calibration cache at a batch), `compact` (any batch, the one for batches > 1; each dynamic block
runs only on the samples whose gate is on: NonZero, Gather, ScatterND; TensorRT 8.5+),
`flat` (every block runs; the twin for graph passes and quantization). Outputs: `logits` [N, classes] and `gates` [N, blocks]
(1 = block executed). Input `input` [N, 3, S, S] float32 (S = the checkpoint's image size), RGB,
(pixel/255 - mean)/std with the checkpoint's mean/std; the graph's metadata (`cosinegate.*`) holds
the class names, input size and layout, mean/std, gate threshold, block policy, training data and
the checkpoint's sha256. --out DIR/ (or an existing folder) writes DIR/model.<form>.onnx.

Policy (conditional, masked and compact): `auto` (default) uses held-out skip rates (the
checkpoint's, or --skip-rates FILE): always-skipped blocks (>= 99.5%) are removed,
always-run blocks (<= 0.5%) are plain, only dynamic blocks are gated; with
--if-cost-table FILE also the dynamic blocks whose expected saving (skip rate x
block latency) is below their If cost. `conditional-all` gates every gated block,
`pruned` is auto with every dynamic block plain (no If), `dense` the gate-free network.

Opset: default 17, the highest TensorRT 8.5 and 8.6 parse (JetPack 5.1, 6.0); each target profile's
max_onnx_opset names its releases' limits (cosinegate/trt/profiles/*.toml).
"""


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_output_flag, add_report_flags, add_version_flag,
                                     positive_int)
    from cosinegate.graphmeta import BLOCK_POLICIES, GRAPH_FORMS

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_checkpoint_flags(parser, required=True)
    add_output_flag(parser, "ONNX file to write (a folder: FOLDER/model.<form>.onnx); the manifest goes to <out>.json",
                    required=True, metavar="FILE")
    parser.add_argument("--form", default="conditional", choices=GRAPH_FORMS, help="graph form (docs/graph-forms.md)")
    parser.add_argument("--batch", type=positive_int, default=1, help="static batch size (conditional: 1 only)")
    # default None, filled in by main: cosinegate.onnx needs onnx, and --help works on the base install
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17, the highest TensorRT 8.5 and 8.6 parse)")
    parser.add_argument("--policy", default="auto", choices=BLOCK_POLICIES, help="which blocks keep their gate: auto (where "
                        "skipping pays), conditional-all, pruned (no If), dense (gate-free)")
    parser.add_argument("--if-cost-table", help="auto: keep plain the dynamic blocks whose expected saving is below their "
                                                "If cost in this table (cosinegate bench --if-cost --json)")
    parser.add_argument("--skip-rates", help="JSON list of per-block skip rates, or a cosinegate evaluate JSON report")
    add_report_flags(parser, "the manifest", verbosity=True)
    add_version_flag(parser)
    return parser.parse_args(argv)


def output_path(out, form):
    """--out as given, or FOLDER/model.<form>.onnx when it names a folder (trailing slash or an existing one)."""
    import os
    from pathlib import Path

    from cosinegate.errors import CosineGateError

    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        return str(Path(out) / f"model.{form}.onnx")
    if Path(out).suffix.lower() != ".onnx":
        raise CosineGateError(f"--out {out} does not end in .onnx; name an .onnx file (or a folder/ for model.{form}.onnx).")
    return out


def main(argv=None):
    from cosinegate.cli import check_files, check_modules, command_log

    args = parse_args(argv)
    log = command_log(args)
    args.out = output_path(args.out, args.form)
    check_files({"checkpoint": args.checkpoint, "skip-rates file": args.skip_rates, "If cost table": args.if_cost_table},
                out=args.out, out_manifest=f"{args.out}.json", json=args.json)
    check_modules("torch", "onnx")

    from cosinegate.onnx import DEFAULT_OPSET, export_checkpoint, load_skip_rates  # onnx, torch: after the checks

    if args.opset is None:
        args.opset = DEFAULT_OPSET
    skip_rates = load_skip_rates(args.skip_rates) if args.skip_rates else None
    manifest = export_checkpoint(args.checkpoint, args.out, args.form, args.batch, args.opset, args.policy, skip_rates,
                                 args.if_cost_table)
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, manifest)
    kinds = ", ".join(f"{b['block']}:{b['kind']}" for b in manifest["blocks"])
    print(f"wrote {args.out} ({manifest['form']}, policy {manifest['policy']}, opset {manifest['opset']}, "
          f"batch {manifest['batch']}, {manifest['num_if']} If) and {args.out}.json")
    log(f"blocks: {kinds}")
    if manifest.get("if_cost"):
        plain = manifest["if_cost"]["plain_by_cost"]
        log(f"If cost table {args.if_cost_table}: kept plain {', '.join(map(str, plain)) if plain else 'no block'}")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
