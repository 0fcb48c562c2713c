#!/usr/bin/env python
"""Training throughput (images/s) of gated (predictive) vs dense ResNet-20 on this device.

    python train/bench_train.py [--device cpu] [--batch-size 128] [--steps 20] [--warmup 3]

Each step is what train/train.py does per batch: crop+flip, forward, the loss with
the compute penalty and the CIR term (gated), backward, gradient clipping and an
SGD step, plus the loop's per-step host syncs. Prints a table and the gated
overhead in percent (goal: <= 15 % on CPU).
"""

import argparse
import time

import _bootstrap  # noqa: F401


def make_step(mode, device, batch_size, seed=0):
    import torch
    from torch.nn import functional as F

    from cosinegate.config import DEFAULTS
    from cosinegate.data.augment import random_crop_flip
    from cosinegate.macs import model_mac_table
    from cosinegate.models import CosineGateNet
    from cosinegate.training.penalty import compute_penalty

    torch.manual_seed(seed)
    model = CosineGateNet("resnet20", mode).to(device).train()
    model.set_temperature(0.5)
    gate_cfg = dict(DEFAULTS["gate"], target=0.6, budget="difficulty", budget_spread=0.15)
    block_macs = [b.residual for b in model_mac_table(model).blocks]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    macs = torch.tensor(block_macs, dtype=torch.float32, device=device)

    def step():
        x = random_crop_flip(x0, generator)
        logits, stats = model(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        loss = losses.mean()
        if mode != "none":
            penalty, _ = compute_penalty(stats.probs, block_macs, gate_cfg, 1.0, losses)
            loss = loss + penalty + stats.cir_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        # the loop's host syncs: loss, accuracy, executed-compute ratio
        float(loss.detach()), float((logits.argmax(1) == y).sum()), float(stats.gates.detach().sum(0) @ macs)

    return step


def measure(step, steps, warmup, device):
    import torch

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv=None):
    import torch

    from cosinegate.cli import pick_device
    from cosinegate.training.loop import hardware_label

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="alternate dense/gated this many times, keep the best of each")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if args.steps < 1 or args.batch_size < 1:
        from cosinegate.errors import CosineGateError

        raise CosineGateError("--steps and --batch-size must be at least 1.")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = {mode: make_step(mode, device, args.batch_size) for mode in ("none", "predictive")}
    best = {mode: float("inf") for mode in steps}
    cpu = {mode: float("inf") for mode in steps}
    for _ in range(args.repeats):  # interleaved, so load changes on a shared machine hit both alike
        for mode, step in steps.items():
            wall, used = measure(step, args.steps, args.warmup, device)
            best[mode], cpu[mode] = min(best[mode], wall), min(cpu[mode], used)
    rate = {mode: args.steps * args.batch_size / seconds for mode, seconds in best.items()}
    overhead = rate["none"] / rate["predictive"] - 1.0
    print(f"training throughput, ResNet-20, batch {args.batch_size}, {args.steps} steps (best of {args.repeats}), {hardware_label(device)}, torch {torch.__version__}")
    print(f"{'model':<22}{'images/s':>12}{'ms/step':>12}{'cpu-ms/step':>14}")
    for mode, label in (("none", "dense (mode none)"), ("predictive", "gated (predictive)")):
        print(f"{label:<22}{rate[mode]:>12.1f}{1000 * best[mode] / args.steps:>12.1f}{1000 * cpu[mode] / args.steps:>14.1f}")
    print(f"gated overhead: {overhead * 100:+.1f} % wall time per image (goal <= 15 % on CPU)")
    if str(device) == "cpu":
        print(f"gated overhead by process CPU time: {(cpu['predictive'] / cpu['none'] - 1) * 100:+.1f} % (robust to other load on a shared machine)")


if __name__ == "__main__":
    from cosinegate.cli import run_main

    run_main(main)
