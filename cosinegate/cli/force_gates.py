"""Benchmark helper: a copy of a predictive checkpoint whose gates skip a known fraction of images.

    cosinegate force-gates --checkpoint CKPT --skip 0.5 --out forced.pt

Each gated block's threshold is moved, block by block, so that it skips --skip of the first
--test-images test images (of the checkpoint's data, at its image size) exactly; the skip rates
stored for the deploy policy are measured on those images. The copy records that its gates
were forced: it is for speed measurements (realized vs ideal speedup), not for accuracy.
"""


def main(argv=None):
    from cosinegate.artifacts import atomic_write_json, input_record
    from cosinegate.cli import check_files, check_modules, command_log
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_flag, add_output_flag,
                                     add_report_flags, add_version_flag, positive_int)

    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_checkpoint_flags(parser, required=True)
    parser.add_argument("--skip", type=float, default=0.5, help="fraction of images each gated block skips (0..1)")
    add_flag(parser, "--test-images", "--samples", type=positive_int, default=200, metavar="N",
             help="test images the thresholds are placed on (--samples is the old spelling)")
    add_data_flags(parser, subset=False)
    add_output_flag(parser, "the forced checkpoint (.pt)", required=True, metavar="FILE")
    add_report_flags(parser, "the data used and the skip rates", verbosity=True)
    add_version_flag(parser)
    args = parser.parse_args(argv)
    check_files({"checkpoint": args.checkpoint}, out=args.out, json=args.json)
    check_modules("torch")

    from cosinegate.bench.gate_patterns import force_checkpoint  # torch: after the parsing, --help needs none

    forced = force_checkpoint(args.checkpoint, args.out, args.skip, args.test_images, args.data, args.data_root,
                              args.image_size, log=command_log(args, polygraphy=False))
    model = forced.model
    print(f"wrote {args.out}: {model.backbone} at {model.image_size}x{model.image_size}, skip rates "
          f"{' '.join(f'{s:.2f}' for s in forced.skip_rates)} on {args.test_images} {forced.data.source} test images")
    if args.json:
        atomic_write_json(args.json, {**forced.record, "out": str(args.out), "skip_rates": forced.skip_rates,
                                      "inputs": input_record(checkpoint=args.checkpoint), "outputs": input_record(out=args.out)})
    return 0

if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
