"""Check that an exported graph computes what its checkpoint computes, gate decisions included.

    cosinegate parity --checkpoint CKPT --onnx model.onnx --json parity.json
    cosinegate parity --checkpoint CKPT --onnx model.onnx --data imagefolder \\
        --data-root ROOT --test-images 1000
    cosinegate parity --checkpoint CKPT --onnx model.onnx --backend trt        # where TensorRT is installed
    cosinegate parity --checkpoint CKPT --onnx int8.onnx --int8                # Q/DQ graphs

First the graph's provenance: a graph whose metadata (or manifest) names another
checkpoint's sha256 is refused. Then Polygraphy's Comparator runs the checkpoint
(PyTorch, CPU) and the graph (ONNX Runtime, or TensorRT with --backend trt) on the
test images of the checkpoint's own training data (--data/--data-root override it;
a class-count mismatch is an error). fp32 profile: logits within atol 1e-4 / rtol 1e-3 per element, gates
exactly equal; --int8: top-1 agreement >= 0.97 and gate agreement >= 0.995. The
report lists blocks whose decisions flipped, and for blocks made static by policy
auto how often PyTorch's own decision disagrees with the fixed one. Exit status 0
when parity passes, 1 when it fails, 2 on bad input.

Without PyTorch (e.g. on the Jetson): save a reference here,

    cosinegate parity --checkpoint CKPT --onnx model.onnx --save-reference ref.json

(inputs go to inputs.json beside ref.json, or --save-inputs FILE), copy model.onnx,
inputs.json and ref.json to the device, and run

    polygraphy run model.onnx --trt --load-inputs inputs.json --load-outputs ref.json \\
        --atol logits:1e-4 gates:0 --rtol logits:1e-3 gates:0

(`--onnxrt` instead of `--trt` runs the same check with ONNX Runtime.)
"""

import json


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_flag, add_report_flags,
                                     add_version_flag, positive_int)

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    model = add_checkpoint_flags(parser, required=True, note="the checkpoint the graph was exported from, and the graph")
    model.add_argument("--onnx", required=True, help="graph written by cosinegate export")
    parser.add_argument("--backend", default="onnxrt", help="onnxrt | trt")
    add_data_flags(parser)
    add_flag(parser, "--test-images", "--samples", type=positive_int, default=500, metavar="N",
             help="test images to compare (default 500; --samples is the old spelling)")
    add_report_flags(parser, "the comparison (agreement per output, the tolerances, passed or not)", old=("--report",),
                     verbosity=True)
    parser.add_argument("--save-reference", help="write PyTorch outputs as Polygraphy RunResults JSON")
    parser.add_argument("--save-inputs", help="where the inputs go with --save-reference (default inputs.json beside it)")
    parser.add_argument("--int8", action="store_true", help="INT8 tolerance profile: top-1 >= 0.97, gates >= 0.995")
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    from dataclasses import fields

    from cosinegate.cli import check_files, check_modules, command_log

    args = parse_args(argv)
    from cosinegate.pipeline.parity_check import ParitySettings, check_parity, saved_inputs_path

    settings = ParitySettings(**{f.name: getattr(args, f.name) for f in fields(ParitySettings)})
    check_files({"checkpoint": args.checkpoint, "ONNX file": args.onnx}, json=args.json,
                save_reference=args.save_reference, save_inputs=saved_inputs_path(settings))
    onnxruntime = args.backend == "onnxrt" or args.save_reference  # a saved reference is checked on ONNX Runtime
    check_modules("torch", "onnx", "polygraphy", *(["onnxruntime"] if onnxruntime else []))
    report = check_parity(settings, log=command_log(args))
    print(report["summary"])
    if report["static_policy_disagreement"]:
        print("static-policy disagreement (PyTorch's own decision vs the fixed one): "
              + json.dumps(report["static_policy_disagreement"]))
    if args.save_reference:
        print(f"wrote {args.save_reference} and {saved_inputs_path(settings)}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
