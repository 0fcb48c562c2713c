#!/usr/bin/env python
"""Training throughput (images/s), dense vs gated, for each speed setting of train/train.py.

    python train/bench_train.py --device cuda                  # every setting, dense and gated, sync check
    python train/bench_train.py --device cpu --steps 5         # the CPU dry-run
    python train/bench_train.py --device cuda --backbone resnet56 --compile

Each step is exactly train/train.py's step (cosinegate.training.loop.Trainer.step): the batch gathered
from the uint8 images already on the device, crop+flip on the device, forward, the loss with the
compute penalties and the CIR term (gated), backward, gradient clipping and an SGD step, with no host
synchronization. On CUDA, --sync-check (on by default) runs a few steps under
torch.cuda.set_sync_debug_mode("error") and reports the first synchronizing call, if any.
--probe is what `train/reproduce.py --jobs auto` runs in several processes at once to measure the
aggregate throughput against the number of concurrent runs.
"""

import _bootstrap  # noqa: F401
from cosinegate.cli import run_main
from cosinegate.cli.bench_train import main

if __name__ == "__main__":
    run_main(main)
