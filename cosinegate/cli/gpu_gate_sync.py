"""Batch-1 cost of deciding on the host at each gate, with PyTorch (no TensorRT needed).

    cosinegate gpu-gate-sync --checkpoint CKPT --device cuda --json gpu_gate_sync.json
    cosinegate gpu-gate-sync --backbone resnet20 --device cpu --iterations 5      # dry run, any machine

Variants: the dense (gate-free) network eager and captured in a CUDA graph (GPU only), the gated network
as deployed in PyTorch (each gate's decision read by the host, skipped blocks not computed), and the gated
network with every gate forced open (the sync cost alone). Inputs are real test images (--data) at the
model's input size and normalization; without --checkpoint an untrained predictive network of --backbone is used, which
measures speed only (its gates skip little) and says so.
"""


def parse_args(argv=None):
    from cosinegate.cli.args import (ArgumentParser, HelpFormatter, add_checkpoint_flags, add_data_flags, add_device_flags, add_flag,
                                     add_report_flags, add_version_flag, nonnegative_int, positive_int)
    from cosinegate.models.backbones import BACKBONES

    p = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    model = add_checkpoint_flags(p, note="without --checkpoint: an untrained --backbone network (speed only)")
    model.add_argument("--backbone", default="resnet20", choices=BACKBONES, metavar="NAME",
                       help=f"without --checkpoint: the backbone built: {', '.join(BACKBONES)}")
    add_device_flags(p, device="cuda", note="cuda is the measurement; cpu a dry run without the CUDA graph")
    p.add_argument("--warmup", type=nonnegative_int, default=50, help="untimed runs of each variant")
    p.add_argument("--iterations", type=positive_int, default=1000, help="timed runs of each variant")
    add_flag(p, "--test-images", "--samples", type=positive_int, default=64, metavar="N",
             help="distinct test images cycled through (--samples is the old spelling)")
    p.add_argument("--random-input", action="store_true", help="random tensors instead of test images (speed only)")
    add_report_flags(p, "the table (a row per variant)")
    add_data_flags(p, "the checkpoint's; without --checkpoint, synthetic", image_size=False, subset=False)
    add_version_flag(p)
    return p.parse_args(argv)


def main(argv=None):
    from cosinegate.cli import check_files

    args = parse_args(argv)
    check_files({"checkpoint": args.checkpoint}, json=args.json)

    from cosinegate.bench.host_sync import measure_checkpoint  # torch: after the parsing, --help needs none

    report = measure_checkpoint(args.checkpoint, args.backbone, args.device, args.warmup, args.iterations,
                                args.test_images, args.random_input, args.data, args.data_root)
    print(f"{report['model']} on {report['device']}, input {'x'.join(map(str, report['input']))}, {report['gates']} gates, "
          f"skip rate {report['skip_rate']:.3f} on {report['images']} {'random inputs' if args.random_input else 'test images'}:")
    print(f"{'variant':28s} {'p50 us':>9s} {'mean us':>9s}")
    for name, row in report["variants"].items():
        print(f"{name:28s} {row['p50_us']:9.1f} {row['mean_us']:9.1f}")
    if report["sync_cost_per_gate_us"] is not None:
        print(f"host decision per gate: {report['sync_cost_per_gate_us']:.1f} us; gated / best dense: "
              f"{report['gated_over_best_dense']:.3f}")
    if args.json:
        from cosinegate.artifacts import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
