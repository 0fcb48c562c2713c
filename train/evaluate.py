#!/usr/bin/env python
"""Evaluate a checkpoint with hard gate decisions: accuracy, executed MACs, savings, routing.

    python train/evaluate.py --checkpoint runs/balanced/last.pt --json eval.json
"""

import argparse

import _bootstrap  # noqa: F401


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.cli import add_data_flags, check_output_files, pick_device
    from cosinegate.data import balanced_subset, load_dataset
    from cosinegate.evaluation import evaluate, format_table
    from cosinegate.training.checkpoint import model_from_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--backbone", help="refuse the checkpoint unless it holds this backbone")
    add_data_flags(parser)
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the report as JSON here")
    parser.add_argument("--plot", help="write a histogram of executed MACs per image here (PNG)")
    args = parser.parse_args(argv)
    check_output_files(json=args.json, plot=args.plot)

    model, state = model_from_checkpoint(args.checkpoint, args.backbone, args.image_size)
    data = state["config"]["data"]
    source = args.data or data["source"]
    root = args.data_root if args.data_root is not None else (data["root"] if source == data["source"] else None)
    train, test = load_dataset(source, root, image_size=model.image_size)
    images = test if args.split == "test" else train
    if len(images.classes) != model.num_classes:
        from cosinegate.errors import CosineGateError

        raise CosineGateError(
            f"the data has {len(images.classes)} classes but the checkpoint was trained on {model.num_classes}; pass matching --data."
        )
    if args.subset:
        images = balanced_subset(images, args.subset)
    rep = evaluate(model.to(pick_device(args.device)), images, device=args.device, progress=True)
    rep.update({"checkpoint": str(args.checkpoint), "data": source, "split": args.split, "epochs_trained": state["epoch"] + 1,
                "image_size": model.image_size, "normalization": model.normalization})
    print(format_table(rep))
    if args.json:
        atomic_write_json(args.json, rep)
        print(f"wrote {args.json}")
    if args.plot:
        from cosinegate.plots import executed_macs_histogram

        executed_macs_histogram(rep["executed_macs_per_image"], rep["dense_macs"], args.plot, f"{rep['backbone']} {rep['mode']}")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
