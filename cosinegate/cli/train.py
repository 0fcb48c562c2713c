"""Train a CosineGate model (or its dense baseline) from a preset or YAML config.

    cosinegate train --config balanced --epochs 5 --out runs/balanced       # a preset, or --config my.yaml
    # two phases: dense first, then gated fine-tuning from it (gates and penalty ramped in, distilled)
    cosinegate train --config dense --out runs/dense
    cosinegate train --config two-phase --init-from runs/dense/last.pt --out runs/two-phase
    # the GPU speed path (bf16 autocast, channels_last, fused SGD), stopping cleanly after 9 minutes
    cosinegate train --config balanced --device cuda --fast --time-limit 540 --out runs/b
    torchrun --nproc_per_node=2 -m cosinegate.cli.train --config balanced --device cpu ...
"""


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_data_flags, add_device_flags, add_output_flag, add_report_flags,
                                     add_version_flag, positive_float, positive_int)

    from cosinegate.config import CHOICES
    from cosinegate.models.backbones import BACKBONES
    from cosinegate.models.choices import MODES

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config", default="balanced", help="preset name (the package's presets/*.yaml; a checkout "
                                                           "links them as train/configs/) or YAML path")
    parser.add_argument("--backbone", choices=BACKBONES, metavar="NAME", help="resnet20|resnet32|resnet44|resnet56|resnet110|paper8 (32x32) | resnet18|resnet34|resnet50 (ImageNet-style); default: the config's, resnet20 for balanced")
    parser.add_argument("--mode", choices=MODES, help="gate mode (default: the config's, predictive for balanced)")
    parser.add_argument("--drop-blocks", help="0-based block indices removed for good (static baseline), e.g. 2,5,8; "
                                              "or from:CKPT = the blocks that gated checkpoint always skips")
    add_data_flags(parser, "the config's, else synthetic")
    parser.add_argument("--normalization", help="input normalization: auto (default: mean/std of the training split) | "
                                                "cifar10 | imagenet | R,G,B/R,G,B")
    parser.add_argument("--epochs", type=positive_int, help="training epochs (optim.epochs; default: the config's, 30 for balanced)")
    parser.add_argument("--batch-size", type=positive_int, help="images per step (optim.batch_size; default: the config's, 128 "
                                                                 "for balanced)")
    parser.add_argument("--lr", type=positive_float, help="peak learning rate (optim.lr; default: the config's, 0.1 for balanced)")
    parser.add_argument("--schedule", choices=CHOICES[("optim", "schedule")], help="learning-rate schedule (default: the config's, cosine for balanced)")
    parser.add_argument("--target", type=float, help="the compute penalty's target: MAC-weighted share of the network executed (gate.target; default: the "
                                                          "config's, 0.68 for balanced; presets with the penalty only)")
    parser.add_argument("--block-rates", type=float, metavar="R", help="per-block target execution rate of every gated "
                                                                       "block (gate.block_rates; presets rates, shaping, two-phase; default: "
                                                                       "the config's)")
    add_device_flags(parser, threads=0)  # on a machine busy with other work, --threads 1 keeps threads from fighting
    parser.add_argument("--seed", type=int, help="seed of the initialisation, data order, augmentation and held-out split "
                                                 "(default: the config's, 0)")
    add_output_flag(parser, "run folder (last.pt, best.pt, metrics.jsonl, summary.json, config.json, training.png)", default="runs/train")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    parser.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's weights (matching tensors; the gates "
                                                             "stay freshly initialised, open), or from a torchvision-format "
                                                             "resnet18/34/50 state dict (classifier re-initialised if the "
                                                             "class count differs; normalization auto = imagenet)")
    parser.add_argument("--distill", type=float, metavar="W", help="distil from the --init-from model's logits with weight W "
                                                                   "(distill.weight; temperature distill.temperature)")
    speed = parser.add_argument_group("speed (how the run executes, not what it learns; may differ on --resume)")
    speed.add_argument("--fast", action="store_true", help="on CUDA: --amp bf16 --channels-last --fused")
    speed.add_argument("--amp", choices=("none", "bf16"), help="bf16 autocast of the forward pass (fp32 master weights)")
    speed.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    speed.add_argument("--compile", action="store_true", help="torch.compile the forward and loss")
    speed.add_argument("--fused", action="store_true", help="fused SGD kernel")
    parser.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                        help="stop after the last epoch that fits in SECONDS (last.pt kept; continue with --resume)")
    parser.add_argument("--stop-after", type=positive_int, metavar="EPOCH",
                        help="stop after this epoch of the schedule (last.pt kept; continue with --resume)")
    add_report_flags(parser, "the run's summary.json", quiet=True)
    add_version_flag(parser)
    return parser.parse_args(argv)


def config_from_args(args):
    from cosinegate.training.run_config import OVERRIDES, run_config

    return run_config(args.config, normalization=args.normalization, drop_blocks=args.drop_blocks, seed=args.seed,
                      init_from=args.init_from, **{key: getattr(args, key) for key in OVERRIDES})


def runtime_from_args(args, device):
    from cosinegate.training.runtime import Runtime

    base = Runtime.fast(device) if args.fast else Runtime()
    return Runtime(amp=args.amp or base.amp, channels_last=args.channels_last or base.channels_last,
                   compile=args.compile, fused=args.fused or base.fused)


def main(argv=None):
    args = parse_args(argv)  # before the torch imports: --help works on the base install
    config = config_from_args(args)  # a missing or bad config is refused before them too
    if not str(args.out).strip():
        from cosinegate.errors import CosineGateError

        raise CosineGateError("--out is empty; name the run folder, e.g. --out runs/my-run.")

    from cosinegate.cli import pick_device
    from cosinegate.evaluation import format_table
    from cosinegate.training.loop import Stopped, train

    device = pick_device(args.device, args.threads)  # the threads are recorded in summary.json's hardware
    log = None if args.quiet else (lambda text: print(text, flush=True))
    summary = train(config, args.out, device, resume=args.resume, progress=not (args.no_progress or args.quiet), log=log,
                    runtime=runtime_from_args(args, device), time_limit=args.time_limit, stop_after=args.stop_after,
                    allow_download=args.data_root is not None)
    if isinstance(summary, Stopped):
        print(f"stopped after epoch {summary.done} of {summary.epochs}; continue with --resume --out {args.out}")
    elif summary is not None:  # the main rank's summary (other ranks print nothing)
        size, norm = summary["image_size"], summary["normalization"]
        print(f"input {size}x{size}, normalization mean {norm['mean']} std {norm['std']} ({norm['source']})")
        print(f"final epoch, test split ({summary['data']}, {summary['epochs']} epochs, {summary['hardware']}):")
        print(format_table(summary["final"]))
        print(f"wrote {args.out}/last.pt, best.pt, metrics.jsonl, summary.json, training.png")
        if args.json:
            from cosinegate.artifacts import atomic_write_json

            atomic_write_json(args.json, summary)


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
