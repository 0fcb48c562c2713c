"""Build a TensorRT engine for a target board, or the bundle the board needs to build it.

    cosinegate build-engine --target jetson-orin --checkpoint CKPT
    cosinegate build-engine --target jetson-orin --checkpoint CKPT --form masked --precision int8 --int8 cache --calib-cache calib.cache
    cosinegate build-engine --target jetson-orin --bundle engines/jetson-orin/model-bundle    # on the device

Everything goes to OUT: --out, else RUN/engines/<target> beside --checkpoint RUN/best.pt, else
(--onnx, --bundle, the embedded default model) engines/<target> in the current folder.
From a checkpoint it exports the ONNX forms (and runs INT8 calibration when asked), reusing
artifacts whose input hashes match (the work cache OUT/.work/<model>; --clean-work removes it after
a successful run). When TensorRT is importable and this host matches the target (arch, compute
capability, TensorRT release), it builds OUT/<model>-<form>-<precision>-trt<ver>-sm<cc>.engine with
Polygraphy, writes <engine>.json and checks parity against the saved PyTorch reference with TrtRunner
(<engine>.parity.json). Otherwise it writes the device bundle OUT/<model>-<form>-<precision>-bundle/
(+ .tar.gz) and prints what to copy and run on the device; --require-engine makes that an error.
INT8 without --calibration/--calib-cache reuses int8/ beside the checkpoint (calibrate's default --out) when it
was made from the same checkpoint (SHA-256) and data, and says so; otherwise it calibrates. A failed INT8
preview prints a measured table of the calibration methods and the command of the best that passes.
Exit status: 0 done, 1 engine parity failed (or, with --require-int8-pass, the INT8 preview failed: no
bundle written), 2 bad input (nothing half-written).
"""


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_output_flag, add_report_flags,
                                     add_version_flag, nonnegative_int, positive_int)
    from cosinegate.pipeline.plan import FORMS, SELECTIONS
    from cosinegate.trt.targets import list_targets

    p = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--target", required=True,
                   help=f"the board: {', '.join(list_targets())}; cpu-onnxruntime (this CPU on ONNX Runtime, the graph "
                        "built and checked here); or the path of your own profile (a copy of one of "
                        "cosinegate/trt/profiles/*.toml with its name changed)")
    src = add_checkpoint_flags(parser=p, exclusive=True, note="one of them; without any: the embedded default model, "
                               "runs/pipeline/balanced-resnet20/best.pt, trained first if missing")
    src.add_argument("--onnx", help="graph from cosinegate export")
    src.add_argument("--bundle", help="bundle folder made by this command (on the device)")
    p.add_argument("--precision", default=None, choices=("int8", "fp16", "fp32"),
                   help="engine precision (default fp16; int8 when --int8 is given)")
    p.add_argument("--int8", dest="int8_path", choices=("qdq", "cache"),
                   help="INT8 path (default: the target's); implies --precision int8")
    p.add_argument("--calib-cache", help="existing TensorRT calibration cache (--int8 cache)")
    p.add_argument("--calibration", help="existing calibration output dir (model.qdq*.onnx, calibration.cache); without it "
                                         "and --calib-cache, int8/ beside the checkpoint is reused when it was made from "
                                         "the same checkpoint and data, else the build calibrates")
    p.add_argument("--require-int8-pass", action="store_true",
                   help="a failed INT8 preview (the bundle's check run here on ONNX Runtime with the Q/DQ graph) exits 1 "
                        "and writes no bundle; without it the failure is a warning, recorded in the manifest")
    p.add_argument("--form", default="conditional", choices=FORMS, help="ONNX form built (cosinegate export --form)")
    p.add_argument("--batch", type=positive_int, default=1, help="static batch size of the engine (conditional: 1 only)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for export (default 17, the highest TensorRT 8.5 and "
                                                                  "8.6 parse; a build refuses one above the target's max_onnx_opset)")
    p.add_argument("--dla-core", type=nonnegative_int, default=None, help="build for this DLA core of the target (default: the GPU)")
    p.add_argument("--workspace", type=positive_int, default=None, help="workspace MiB (default: the target's)")
    p.add_argument("--timing-cache", help="timing cache file (loaded if present, saved after the build)")
    add_output_flag(p, "output folder (default: RUN/engines/<target> beside --checkpoint RUN/best.pt; engines/<target> in "
                       "the current folder from --onnx, --bundle or the embedded default model)")
    p.add_argument("--clean-work", action="store_true",
                   help="after a successful run, remove the work cache OUT/.work/<model> (exported graphs incl. the flat "
                        "twin, PyTorch references, calibration: what the next run would reuse instead of making again)")
    p.add_argument("--require-engine", action="store_true", help="fail instead of writing a bundle")
    p.add_argument("--select", choices=SELECTIONS, default=None,
                   help="fastest (default from a checkpoint, conditional form, fp32/fp16): build the conditional, statically "
                        "pruned and gate-free dense candidates, time each, keep the fastest whose accuracy is within the "
                        "profile's tolerance of the conditional one; or force one")
    p.add_argument("--select-images", type=positive_int, default=300, help="labelled test images the candidates are timed and scored on")
    p.add_argument("--if-cost-table", help="the export keeps plain (the block policy auto) the dynamic blocks whose expected saving is below their "
                                           "If cost in this table (cosinegate bench --if-cost --json)")
    p.add_argument("--force", action="store_true", help="replace a bundle of the same name made from another model")
    add_report_flags(p, "what was built (the bundle's or the engine's manifest)", verbosity=True)
    add_data_flags(p, subset=False)
    add_version_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    from dataclasses import fields

    from cosinegate.artifacts import atomic_write_json
    from cosinegate.cli import check_files, command_log
    from cosinegate.pipeline.deploy import deploy
    from cosinegate.pipeline.int8_check import Int8CheckFailed
    from cosinegate.pipeline.plan import DeploySettings

    args = parse_args(argv)
    check_files({"checkpoint": args.checkpoint, "ONNX file": args.onnx, "calibration cache": args.calib_cache,
                "timing cache": args.timing_cache, "If cost table": args.if_cost_table}, json=args.json)
    log = command_log(args)
    try:
        result = deploy(DeploySettings(**{f.name: getattr(args, f.name) for f in fields(DeploySettings)}), log=log)
    except Int8CheckFailed as exc:  # a check that failed, not bad input: exit 1, and no bundle was written
        import sys

        print(f"error: {exc}", file=sys.stderr)
        return 1
    if log.quiet:  # the library's lines (the result among them) were silenced: the result in one line
        print(result_line(result))
    if args.json and result.manifest is not None:
        atomic_write_json(args.json, result.manifest.to_json())
    return 0 if result.passed else 1


def result_line(result):
    """What a deploy made, in one line (build_engine --quiet prints only this, and errors)."""
    if result.bundle is not None:
        return f"wrote the device bundle {result.bundle} and {result.archive}"
    if result.engine is not None:
        return f"built {result.engine}; parity vs the PyTorch reference {'passed' if result.passed else 'FAILED'}"
    return "no engine built here; the bundle is verified" if result.passed else "FAILED"


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
