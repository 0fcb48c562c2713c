"""The training-throughput benchmark of cosinegate bench-train: images/s of the training command's step, dense and gated, per speed
setting (cosinegate.training.throughput), and the aggregate of concurrent runs (cosinegate.research.packing)."""

from dataclasses import dataclass, field

EPOCH_IMAGES = 45_000  # the CIFAR-10 training split the estimate is for (50,000 less the 5,000 held out)


@dataclass
class TrainingSpeed:
    """What measure() found: a row per setting and mode, and a row per concurrency level."""

    backbone: str
    batch_size: int
    steps: int
    repeats: int
    hardware: str
    torch: str
    settings: list
    rows: list
    concurrency: list = field(default_factory=list)
    seconds: float = 0.0  # the window of each concurrency level

    def throughput_lines(self):
        """Throughput per setting (with the gated/dense time and host syncs) and the estimate of a 160-epoch run at
        the best dense setting."""
        out = [f"training throughput, {self.backbone}, batch {self.batch_size}, {self.steps} steps x {self.repeats} (best), "
               f"{self.hardware}, torch {self.torch}",
               f"{'setting':<34}{'dense img/s':>13}{'gated img/s':>13}{'gated/dense time':>18}  host syncs in a step (dense / gated)"]
        for name in self.settings:
            dense, gated = (next(r for r in self.rows if r["setting"] == name and r["mode"] == m) for m in ("none", "predictive"))
            if "error" in dense or "error" in gated:
                out.append(f"{name:<34}  failed: {dense.get('error') or gated.get('error')}")
                continue
            ratio = dense["images_per_s"] / gated["images_per_s"]
            out.append(f"{name:<34}{dense['images_per_s']:>13.0f}{gated['images_per_s']:>13.0f}{ratio:>17.2f}x  "
                       f"{dense['host_syncs']} / {gated['host_syncs']}")
        best = max((r for r in self.rows if r.get("mode") == "none" and "error" not in r), key=lambda r: r["images_per_s"],
                   default=None)
        if best:
            out.append(f"at the best dense setting ({best['setting']}): a 160-epoch run over {EPOCH_IMAGES} images would "
                       f"take {160 * EPOCH_IMAGES / best['images_per_s'] / 60:.1f} min of training steps (evaluation not counted)")
        return out

    def concurrency_lines(self):
        """The aggregate images/s of concurrent runs (none where no level was measured)."""
        if not self.concurrency:
            return []
        return ["", f"concurrent runs ({self.settings[0]}, {self.seconds:.0f} s window each; images/s summed over the runs)",
                f"{'runs x threads':<16}{'dense img/s':>13}{'gated img/s':>13}",
                *(f"{r['jobs']}x{r['threads']:<14}{r['none']:>13.0f}{r['predictive']:>13.0f}" for r in self.concurrency)]

    def record(self):
        """The JSON report (--json)."""
        return {"backbone": self.backbone, "batch_size": self.batch_size, "hardware": self.hardware, "torch": self.torch,
                "rows": self.rows, "concurrency": self.concurrency}


def measure(device, settings=None, compile=False, backbone="resnet20", batch_size=128, steps=20, warmup=3, repeats=3,
            concurrency=(), seconds=8.0, device_name=None, log=None):
    """Time every setting (``settings``: comma-separated names, default all but compile) dense and gated on
    ``device`` (a torch.device), then each (jobs, threads) of ``concurrency`` for ``seconds`` per level at the first
    setting (``device_name``: the device as the probe processes are told it); a TrainingSpeed. ``log`` gets each
    table's lines as soon as it is measured."""
    import torch

    from cosinegate.research.packing import concurrency_rows
    from cosinegate.training import throughput
    from cosinegate.training.loop import hardware_label

    log = log or (lambda line: None)
    names = throughput.setting_names(settings, compile)
    rows = throughput.throughput_rows(names, backbone, device, batch_size, steps, warmup, repeats)
    speed = TrainingSpeed(backbone, batch_size, steps, repeats, hardware_label(device), torch.__version__, names, rows,
                          seconds=seconds)
    for line in speed.throughput_lines():
        log(line)
    speed.concurrency = concurrency_rows(list(concurrency), device_name or str(device), backbone, names[0], seconds,
                                         batch_size, warmup)
    for line in speed.concurrency_lines():
        log(line)
    return speed
