"""INT8 calibration: explicit Q/DQ ONNX graphs and a TensorRT calibration cache from one set of ranges.

    cosinegate calibrate --checkpoint CKPT [--data imagefolder --data-root DIR] \\
        [--calib-images 512] [--seed 0] [--batch-size 32] [--method minmax|entropy|percentile] \\
        [--percentile 99.99] [--trt-version 8.5|10.3] [--forms flat,conditional] [--out DIR (default RUN/int8)]
    cosinegate calibrate --checkpoint CKPT --cache-in calibration.cache --method entropy --trt-version 8.5

Data: the training split of the data the checkpoint was trained on (its source and
root; --data/--data-root override them, a class-count mismatch is an error); the
choice is printed and recorded in manifest.json.

Writes to --out (default: int8/ beside the checkpoint, where build-engine finds and reuses a calibration of
the same checkpoint and data): model.qdq.onnx (flat twin, Q/DQ), model.qdq.conditional.onnx (Q/DQ
inside each dynamic block's If then-branch; `--forms` may add `masked` and `compact`),
calibration.cache (TRT-<version>-EntropyCalibration2 for entropy,
MinMaxCalibration for minmax and percentile), manifest.json (method, image ids and
their sha256, checkpoint/ONNX hashes, TensorRT version, per-tensor amax).
Nothing is written unless everything was built and checked.

--trt-version: 8.5 (JetPack 5, = 8.5.2), 10.3 (JetPack 6.1/6.2, = 10.3.0) or a full version.
--cache-in FILE: take the ranges from an existing cache instead of calibrating; it
is refused unless its header matches --trt-version and the method's algorithm.
Paper-mode checkpoints have no conditional form: use --forms flat,masked.
"""


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_flag, add_output_flag,
                                     add_report_flags, add_version_flag, positive_int, seed_int)
    from cosinegate.graphmeta import BLOCK_POLICIES
    from cosinegate.quant.names import DEFAULT_FORMS, DEFAULT_TRT, METHODS

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_checkpoint_flags(parser, required=True)
    add_data_flags(parser, subset=False)  # calibration takes --calib-images
    add_flag(parser, "--calib-images", "--num-images", type=positive_int, default=512, metavar="N",
             help="calibration images from the train split (default 512; --num-images is the old spelling)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the class-balanced sample of calibration images")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per ONNX Runtime run (the ranges do not "
                                                                           "depend on it)")
    parser.add_argument("--method", default="entropy", choices=METHODS, help="how each tensor's range is taken")
    parser.add_argument("--percentile", type=float, default=99.99, help="--method percentile: the percentile of |x| kept as amax")
    parser.add_argument("--trt-version", default=DEFAULT_TRT, help="8.5 (= 8.5.2, JetPack 5.1) | 10.3 (= 10.3.0, JetPack 6.1/6.2) | any full MAJOR.MINOR.PATCH")
    parser.add_argument("--forms", default=",".join(DEFAULT_FORMS), help="comma list of flat, conditional, masked, compact")
    parser.add_argument("--policy", default="auto", choices=BLOCK_POLICIES, help="block policy of the Q/DQ graphs "
                        "(as `cosinegate export --policy`)")
    parser.add_argument("--cache-in", default=None, help="existing calibration cache to reuse (validated)")
    add_output_flag(parser, "folder of the Q/DQ graphs, the calibration cache and manifest.json (default: int8/ beside "
                            "the checkpoint, where build_engine finds it)")
    add_report_flags(parser, "the calibration manifest (manifest.json)", verbosity=True)
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    from dataclasses import fields

    from cosinegate.cli import check_files, check_modules, check_output_folder, command_log

    args = parse_args(argv)
    from cosinegate.pipeline.calibration import CalibrationSettings, calibrate_checkpoint, default_calibration_dir

    inputs = {"checkpoint": args.checkpoint, "calibration cache": args.cache_in}
    check_files(inputs, json=args.json)
    # ONNX Runtime collects the ranges, which a given cache already holds
    check_modules("torch", "onnx", "onnx_graphsurgeon", *([] if args.cache_in else ["onnxruntime"]))
    check_output_folder("--out", args.out or str(default_calibration_dir(args.checkpoint)), inputs)
    forms = tuple(f.strip() for f in args.forms.split(",") if f.strip())
    values = {f.name: getattr(args, f.name) for f in fields(CalibrationSettings) if f.name != "forms"}
    result = calibrate_checkpoint(CalibrationSettings(**values, forms=forms), log=command_log(args))
    m = result.manifest
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, m)
    print(f"wrote {', '.join(result.names)} to {result.out}")
    print(f"method {m['method']}, {m['num_images'] or 'cache'} images, cache header {m['cache']['header']}, "
          f"{len(m['quantized_tensors'])} Q/DQ activation tensors, {len(m['amax'])} cache tensors")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
