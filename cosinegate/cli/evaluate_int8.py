"""Compare FP32 and INT8 (explicit Q/DQ) graphs of a checkpoint on the test split with ONNX Runtime.

    cosinegate evaluate-int8 --checkpoint CKPT [--data imagefolder --data-root DIR] \\
        [--methods minmax,entropy,percentile] [--test-images N] [--json OUT]

Data: the checkpoint's own training data unless --data/--data-root say otherwise.
Per method: ranges from the calibration set (class-stratified sample of the TRAIN
split, --calib-images/--seed), Q/DQ graph built like cosinegate calibrate, then
top-1 of FP32 and INT8, top-1 agreement, gate-decision agreement per block and
the cosine similarity of the logits, on the (first --test-images images of the) test split.
Both sides run the masked form (same function as the conditional graph, batched);
--policy conditional-all (default) compares every gate.
"""


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_flag, add_report_flags,
                                     add_version_flag, positive_int, seed_int)

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_checkpoint_flags(parser, required=True)
    add_data_flags(parser, subset=False)  # --test-images and --calib-images instead
    parser.add_argument("--methods", default="minmax,entropy,percentile", help="comma list of calibration methods compared")
    add_flag(parser, "--calib-images", "--num-images", type=positive_int, default=512, metavar="N",
             help="calibration images from the train split (default 512; --num-images is the old spelling)")
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the class-balanced sample of calibration images")
    parser.add_argument("--percentile", type=float, default=99.99, help="the percentile method's percentile of |x|")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="calibration batch size")
    parser.add_argument("--eval-batch", type=positive_int, default=100, help="test images per ONNX Runtime run")
    parser.add_argument("--policy", default="conditional-all", help="conditional-all (default) | auto")
    add_flag(parser, "--test-images", "--limit", type=positive_int, default=None, metavar="N",
             help="evaluate only the first N test images (--limit is the old spelling)")
    add_report_flags(parser, "the table: top-1 of FP32 and INT8, top-1 and gate agreement, logit cosine, per method")
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.cli import check_files, check_modules

    args = parse_args(argv)
    check_files({"checkpoint": args.checkpoint}, json=args.json)
    check_modules("torch", "onnx", "onnx_graphsurgeon", "onnxruntime")

    from cosinegate.quant.accuracy import evaluate_checkpoint, format_table  # torch: after the parsing, --help needs none

    report = evaluate_checkpoint(args.checkpoint, [m.strip() for m in args.methods.split(",") if m.strip()], data=args.data,
                                 data_root=args.data_root, image_size=args.image_size, calib_images=args.calib_images,
                                 seed=args.seed, policy=args.policy, test_images=args.test_images, batch=args.eval_batch,
                                 calib_batch=args.batch_size, percentile=args.percentile)
    print(f"{report['num_images']} test images, {report['calibration_images']} calibration images, policy {args.policy}")
    print(format_table(report))
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
