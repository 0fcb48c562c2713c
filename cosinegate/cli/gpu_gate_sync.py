"""Batch-1 cost of deciding on the host at each gate, with PyTorch (no TensorRT needed):

    python deploy/gpu_gate_sync.py --checkpoint CKPT --device cuda --json gpu_gate_sync.json
    python deploy/gpu_gate_sync.py --backbone resnet20 --device cpu --iterations 5      # dry run, any machine

Variants: the dense (gate-free) network eager and captured in a CUDA graph (GPU only), the gated network
as deployed in PyTorch (each gate's decision read by the host, skipped blocks not computed), and the gated
network with every gate forced open (the sync cost alone). Inputs are real test images (--data) at the
model's input size and normalization; without --checkpoint an untrained predictive network of --backbone is used, which
measures speed only (its gates skip little) and says so.
"""

import argparse
import json


def parse_args(argv=None):
    from cosinegate.cli.args import (HelpFormatter, add_checkpoint_flags, add_data_flags, add_device_flags, add_flag,
                                     add_report_flags, add_version_flag, nonnegative_int, positive_int)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    model = add_checkpoint_flags(p, note="without --checkpoint: an untrained --backbone network (speed only)")
    model.add_argument("--backbone", default="resnet20", help="without --checkpoint: the backbone built (default resnet20)")
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
    from cosinegate.cli import check_output_files
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.errors import CosineGateError

    args = parse_args(argv)

    import torch  # after the parsing: --help works on the base install

    from cosinegate.bench.host_sync import measure
    from cosinegate.data.augment import to_tensor

    check_output_files({"checkpoint": args.checkpoint}, json=args.json)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CosineGateError("no CUDA device here; run on a GPU, or pass --device cpu for a dry run.")
    if args.iterations < 1 or args.test_images < 1:
        raise CosineGateError("--iterations and --test-images must be at least 1.")
    if args.checkpoint:
        from cosinegate.training.checkpoint import model_from_checkpoint

        from cosinegate.data.normalization import of_checkpoint

        model, state = model_from_checkpoint(args.checkpoint)
        source, normalization, origin = args.checkpoint, of_checkpoint(state), DataOrigin.of_checkpoint(state)
    else:
        from cosinegate.config import load_config
        from cosinegate.models import build_model

        config = load_config("balanced")["model"]
        model = build_model(dict(config, backbone=args.backbone, mode="predictive")).eval()
        source, normalization, origin = f"untrained predictive {args.backbone} (speed only)", None, None
    if args.device == "cpu":
        torch.set_num_threads(1)  # a dry run: stable, and polite on shared machines
    model = model.to(args.device).eval()
    size = model.spec.image_size
    if args.random_input:
        x = torch.randn(args.test_images, model.spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))
        data = "random (speed only)"
    else:
        if origin is None:  # an untrained network has no data of its own: the given data, else the embedded set
            origin = DataOrigin("synthetic", None, (), size)
        chosen = choose_data(origin, args.data, args.data_root)
        x = to_tensor(chosen.test.images[: args.test_images], "cpu", normalization)
        data = chosen.record()
    x = x.to(args.device)
    inputs = [x[i : i + 1] for i in range(x.shape[0])]
    report = measure(model, inputs, args.warmup, args.iterations)
    report.update(model=source, backbone=model.backbone, input=list(inputs[0].shape), data=data,
                  torch=torch.__version__)
    print(f"{source} on {report['device']}, input {'x'.join(map(str, report['input']))}, {report['gates']} gates, "
          f"skip rate {report['skip_rate']:.3f} on {len(inputs)} {'random inputs' if args.random_input else 'test images'}:")
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
