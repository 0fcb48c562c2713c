#!/usr/bin/env python
"""Train a CosineGate model (or its dense baseline) from a preset or YAML config.

    python train/train.py --config train/configs/balanced.yaml --epochs 5 --out runs/balanced
    torchrun --nproc_per_node=2 train/train.py --config balanced --device cpu ...
"""

import argparse

import _bootstrap  # noqa: F401


def parse_args(argv=None):
    from cosinegate.cli import add_data_flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="balanced", help="preset name (train/configs/*.yaml) or YAML path")
    parser.add_argument("--backbone", help="resnet20|resnet32|resnet44|resnet56|resnet110|paper8")
    parser.add_argument("--mode", help="gate mode: paper|predictive|none")
    parser.add_argument("--drop-blocks", help="0-based block indices removed for good (static baseline), e.g. 2,5,8; "
                                              "or from:CKPT = the blocks that gated checkpoint always skips")
    add_data_flags(parser)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--schedule", help="learning-rate schedule: cosine|cosine_restarts|onecycle")
    parser.add_argument("--target", type=float, help="gate compute target r_target")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", default="runs/train", help="run folder (last.pt, best.pt, metrics.jsonl, summary.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def parse_drop_blocks(text):
    """'2,5,8' -> [2, 5, 8]; 'from:CKPT' -> the blocks whose stored held-out skip rate makes them always skipped."""
    from cosinegate.errors import CosineGateError

    if text.startswith("from:"):
        from cosinegate.evaluation import block_classes
        from cosinegate.training.checkpoint import load_checkpoint

        rates = load_checkpoint(text[5:]).get("skip_rates")
        if rates is None:
            raise CosineGateError(f"{text[5:]} stores no skip rates; pass the indices, e.g. --drop-blocks 2,5,8.")
        return [i for i, kind in enumerate(block_classes(rates)) if kind == "always_skipped"]
    try:
        return [int(b) for b in text.split(",") if b.strip()]
    except ValueError as exc:
        raise CosineGateError(f"--drop-blocks {text!r}: expected comma-separated block indices or from:CKPT.") from exc


def config_from_args(args):
    from cosinegate.config import load_config, validate

    config = load_config(args.config)
    overrides = {
        ("model", "backbone"): args.backbone,
        ("model", "mode"): args.mode,
        ("data", "source"): args.data,
        ("data", "root"): args.data_root,
        ("data", "subset"): args.subset,
        ("optim", "epochs"): args.epochs,
        ("optim", "batch_size"): args.batch_size,
        ("optim", "lr"): args.lr,
        ("optim", "schedule"): args.schedule,
        ("gate", "target"): args.target,
    }
    for (section, key), value in overrides.items():
        if value is not None:
            config[section][key] = value
    if args.drop_blocks is not None:
        config["model"]["drop_blocks"] = parse_drop_blocks(args.drop_blocks)
    if args.seed is not None:
        config["seed"] = args.seed
    return validate(config)


def main(argv=None):
    from cosinegate.cli import pick_device
    from cosinegate.evaluation import format_table
    from cosinegate.training.loop import train

    args = parse_args(argv)
    config = config_from_args(args)
    summary = train(config, args.out, pick_device(args.device), resume=args.resume, progress=not args.no_progress)
    if summary is not None:
        print(f"final epoch, test split ({summary['data']}, {summary['epochs']} epochs, {summary['hardware']}):")
        print(format_table(summary["final"]))
        print(f"wrote {args.out}/last.pt, best.pt, metrics.jsonl, summary.json, training.png")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
