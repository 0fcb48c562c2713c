"""Evaluate a checkpoint with hard gate decisions: accuracy, executed MACs, savings, routing.

    python train/evaluate.py --checkpoint runs/balanced/last.pt --json eval.json
"""

import argparse

from cosinegate.artifacts import atomic_write_json
from cosinegate.cli import HelpFormatter, add_data_flags, add_version_flag, check_output_files, pick_device, run_main
from cosinegate.data import balanced_subset
from cosinegate.data.choice import DataOrigin, choose_data
from cosinegate.plots import executed_macs_histogram


def main(argv=None):
    from cosinegate.evaluation import evaluate, format_table
    from cosinegate.training.checkpoint import model_from_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--backbone", help="refuse the checkpoint unless it holds this backbone")
    add_data_flags(parser)
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="REPORT", help="write the report as JSON here")
    parser.add_argument("--plot", help="write a histogram of executed MACs per image here (PNG)")
    add_version_flag(parser)
    args = parser.parse_args(argv)
    check_output_files({"checkpoint": args.checkpoint}, json=args.json, plot=args.plot)

    model, state = model_from_checkpoint(args.checkpoint, args.backbone, args.image_size)
    data = choose_data(DataOrigin.of_checkpoint(state), args.data, args.data_root)
    images = data.test if args.split == "test" else data.train
    if args.subset:
        images = balanced_subset(images, args.subset)
    rep = evaluate(model.to(pick_device(args.device)), images, device=args.device, progress=True)
    rep.update({"checkpoint": str(args.checkpoint), "data": data.record(), "split": args.split, "epochs_trained": state["epoch"] + 1,
                "image_size": model.image_size, "normalization": model.normalization})
    print(format_table(rep))
    if args.json:
        atomic_write_json(args.json, rep)
        print(f"wrote {args.json}")
    if args.plot:
        executed_macs_histogram(rep["executed_macs_per_image"], rep["dense_macs"], args.plot, f"{rep['backbone']} {rep['mode']}")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    run_main(main)
