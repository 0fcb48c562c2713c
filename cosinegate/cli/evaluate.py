"""Evaluate a checkpoint with hard gate decisions: accuracy, executed MACs, savings, routing.

    cosinegate evaluate --checkpoint runs/balanced/last.pt --json eval.json
"""


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json
    from cosinegate.cli import check_files, check_modules, command_log, pick_device
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_device_flags, add_report_flags,
                                     add_version_flag)
    from cosinegate.models.backbones import BACKBONES

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    model = add_checkpoint_flags(parser, required=True)
    model.add_argument("--backbone", choices=BACKBONES, metavar="NAME",
                       help=f"refuse the checkpoint unless it holds this backbone ({', '.join(BACKBONES)})")
    add_data_flags(parser)
    parser.add_argument("--split", default="test", choices=("test", "train"), help="which split of the data is evaluated")
    add_device_flags(parser, threads=0)  # beside other work (a training run), --threads 1 keeps threads from fighting
    add_report_flags(parser, "the evaluation: accuracy, executed MACs, savings, routing", verbosity=True)
    parser.add_argument("--plot", help="write a histogram of executed MACs per image here (PNG)")
    add_version_flag(parser)
    args = parser.parse_args(argv)
    check_files({"checkpoint": args.checkpoint}, json=args.json, plot=args.plot)
    check_modules("torch", *(["matplotlib"] if args.plot else []))

    from cosinegate.evaluation import format_table  # torch: after the parsing, --help needs none
    from cosinegate.training.evaluate import evaluate_checkpoint

    log = command_log(args, polygraphy=False)
    rep = evaluate_checkpoint(args.checkpoint, backbone=args.backbone, image_size=args.image_size, data=args.data,
                              data_root=args.data_root, split=args.split, subset=args.subset,
                              device=pick_device(args.device, args.threads), progress=not log.quiet, log=log)
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
