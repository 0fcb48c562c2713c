"""Compare FP32 and INT8 (explicit Q/DQ) graphs of a checkpoint on the test split with ONNX Runtime.

    python calibration/evaluate_int8.py --checkpoint CKPT [--data imagefolder --data-root DIR] \
        [--methods minmax,entropy,percentile] [--test-images N] [--json OUT]

Data: the checkpoint's own training data unless --data/--data-root say otherwise.
Per method: ranges from the calibration set (class-stratified sample of the TRAIN
split, --calib-images/--seed), Q/DQ graph built like calibration/calibrate.py, then
top-1 of FP32 and INT8, top-1 agreement, gate-decision agreement per block and
the cosine similarity of the logits, on the (first --test-images images of the) test split.
Both sides run the masked form (same function as the conditional graph, batched);
--policy conditional-all (default) compares every gate.
"""

import argparse

from cosinegate.artifacts import atomic_write_json
from cosinegate.cli import HelpFormatter, add_data_flags, add_version_flag, check_output_files, positive_int, run_main, seed_int
from cosinegate.data.choice import DataOrigin, choose_data
from cosinegate.errors import CosineGateError
from cosinegate.quant.calibset import select


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    add_data_flags(parser)
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--calib-images", "--num-images", dest="calib_images", type=positive_int, default=512,
                        help="calibration images (train split; --num-images is the old spelling)")
    parser.add_argument("--seed", type=seed_int, default=0)
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument("--batch-size", type=positive_int, default=64, help="calibration batch size")
    parser.add_argument("--eval-batch", type=positive_int, default=100)
    parser.add_argument("--policy", default="conditional-all", help="conditional-all (default) | auto")
    parser.add_argument("--test-images", "--limit", dest="test_images", type=positive_int, default=None,
                        help="evaluate only the first N test images (--limit is the old spelling)")
    parser.add_argument("--json", default=None, metavar="REPORT", help="write the report as JSON here")
    add_version_flag(parser)
    return parser.parse_args(argv)


def main(argv=None):
    from cosinegate.quant.accuracy import evaluate, format_table
    from cosinegate.quant.calibrate import check_method
    from cosinegate.training.checkpoint import model_from_checkpoint

    args = parse_args(argv)
    check_output_files({"checkpoint": args.checkpoint}, json=args.json)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise CosineGateError("--methods is empty; pass e.g. minmax,entropy,percentile.")
    for method in methods:
        check_method(method)
    if args.subset is not None:
        raise CosineGateError("--subset is not used here; use --test-images N for the test split and --calib-images for calibration.")
    model, state = model_from_checkpoint(args.checkpoint, image_size=args.image_size)
    data = choose_data(DataOrigin.of_checkpoint(state), args.data, args.data_root)
    calib = select(data.train, args.calib_images, args.seed, data.source, None if data.root is None else str(data.root))
    images, labels = data.test.images, data.test.labels
    if args.test_images is not None:
        if args.test_images < 1:
            raise CosineGateError(f"--test-images must be at least 1, got {args.test_images}.")
        images, labels = images[: args.test_images], labels[: args.test_images]
    report = evaluate(model, state, images, labels, calib.images, methods, args.policy, args.eval_batch,
                      args.batch_size, args.percentile)
    report.update(checkpoint=str(args.checkpoint), data=data.record(), calibration_images=len(calib), calibration_ids_sha256=calib.ids_sha256)
    print(f"{report['num_images']} test images, {len(calib)} calibration images, policy {args.policy}")
    print(format_table(report))
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    run_main(main)
