#!/usr/bin/env python
"""Compare FP32 and INT8 (explicit Q/DQ) graphs of a checkpoint on the test split with ONNX Runtime.

    python calibration/evaluate_int8.py --checkpoint CKPT --data imagefolder --data-root DIR \
        [--methods minmax,entropy,percentile] [--limit N] [--json OUT]

Per method: ranges from the calibration set (class-stratified sample of the TRAIN
split, --num-images/--seed), Q/DQ graph built like calibration/calibrate.py, then
top-1 of FP32 and INT8, top-1 agreement, gate-decision agreement per block and
the cosine similarity of the logits, on the (first --limit images of the) test split.
Both sides run the masked form (same function as the conditional graph, batched);
--policy conditional-all (default) compares every gate.
"""

import argparse

import _bootstrap  # noqa: F401


def parse_args(argv=None):
    from cosinegate.cli import add_data_flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    add_data_flags(parser)
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--num-images", type=int, default=512, help="calibration images (train split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--batch-size", type=int, default=64, help="calibration batch size")
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--policy", default="conditional-all", help="conditional-all (default) | auto")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test images")
    parser.add_argument("--json", default=None, help="write the report as JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.data import load_dataset
    from cosinegate.errors import CosineGateError
    from cosinegate.quant.accuracy import evaluate, format_table
    from cosinegate.quant.calibrate import check_method
    from cosinegate.quant.calibset import select
    from cosinegate.training.checkpoint import model_from_checkpoint

    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise CosineGateError("--methods is empty; pass e.g. minmax,entropy,percentile.")
    for method in methods:
        check_method(method)
    if args.subset is not None:
        raise CosineGateError("--subset is not used here; use --limit N for the test split and --num-images for calibration.")
    model, state = model_from_checkpoint(args.checkpoint, image_size=args.image_size)
    source = args.data or "synthetic"
    train, test = load_dataset(source, args.data_root, image_size=model.image_size)
    calib = select(train, args.num_images, args.seed, source, args.data_root)
    images, labels = test.images, test.labels
    if args.limit is not None:
        if args.limit < 1:
            raise CosineGateError(f"--limit must be at least 1, got {args.limit}.")
        images, labels = images[: args.limit], labels[: args.limit]
    report = evaluate(model, state, images, labels, calib.images, methods, args.policy, args.eval_batch,
                      args.batch_size, args.percentile)
    report.update(checkpoint=str(args.checkpoint), data=source, calibration_images=len(calib), calibration_ids_sha256=calib.ids_sha256)
    print(f"{report['num_images']} test images, {len(calib)} calibration images, policy {args.policy}")
    print(format_table(report))
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
