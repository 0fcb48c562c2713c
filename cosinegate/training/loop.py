"""The training loop: resumable, deterministic per epoch, DDP-aware, selects on a held-out split."""

import json
import math
import platform
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from cosinegate.artifacts import atomic_write_json, atomic_write_text
from cosinegate.data import balanced_subset, load_dataset, split_holdout
from cosinegate.data.augment import crop_flip_params, random_crop_flip, to_tensor
from cosinegate.errors import CosineGateError
from cosinegate.evaluation import evaluate
from cosinegate.macs import model_mac_table
from cosinegate.models import build_model
from cosinegate.training import schedules
from cosinegate.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from cosinegate.training.distributed import DistContext
from cosinegate.training.penalty import collapse_penalty, compute_penalty, compute_ratio


def _epoch_seed(seed, epoch):
    return seed * 100_003 + epoch


def hardware_label(device):
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


class Trainer:
    """Holds data, model and optimizer of one run in `out_dir`."""

    def __init__(self, config, out_dir, device="cpu", progress=True):
        self.config = config
        self.out = Path(out_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.dist = DistContext.from_env(device)
        data = config["data"]
        train, self.test = load_dataset(data["source"], data["root"])
        if data["subset"]:
            train = balanced_subset(train, int(data["subset"]), seed=config["seed"])
        self.train_set, self.val_set = split_holdout(train, data["val_fraction"], seed=config["seed"])
        self.classes = train.classes
        torch.manual_seed(config["seed"])
        self.model = build_model(config["model"], num_classes=len(self.classes)).to(self.device)
        self.block_macs = [b.residual for b in model_mac_table(self.model).blocks]
        self.gated = [i for i, b in enumerate(self.model.blocks) if b.gate is not None]
        self.net = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        optim = config["optim"]
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=optim["lr"], momentum=optim["momentum"], weight_decay=optim["weight_decay"]
        )
        self.images = torch.as_tensor(self.train_set.images, device=self.device)
        self.labels = torch.as_tensor(self.train_set.labels, device=self.device)
        self.start_epoch, self.best_val = 0, -1.0

    # ---- state -------------------------------------------------------------
    def state(self, epoch, skip_rates=None):
        return {
            "skip_rates": skip_rates,  # held-out skip rates at this epoch: the deploy policy's input
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": self.config["optim"]["schedule"], "epochs_done": epoch + 1},
            "rng": capture_rng(),
            "config": self.config,
            "epoch": epoch,
            "best_val": self.best_val,
            "num_classes": len(self.classes),
            "classes": self.classes,
        }

    def resume(self):
        path = self.out / "last.pt"
        if not path.is_file():
            raise CosineGateError(f"--resume given but {path} does not exist; start without --resume.")
        state = load_checkpoint(path)
        if state["config"] != self.config:
            raise CosineGateError(f"{path} was trained with another config; resume with the same flags or use a new --out.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"])
        self.start_epoch, self.best_val = state["epoch"] + 1, state["best_val"]

    # ---- one epoch ---------------------------------------------------------
    def train_epoch(self, epoch):
        cfg, optim = self.config, self.config["optim"]
        epochs, batch = optim["epochs"], optim["batch_size"]
        seed = _epoch_seed(cfg["seed"], epoch)
        torch.manual_seed(seed)  # Gumbel noise: reproducible per epoch, so resume is exact
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.labels), generator=generator)[self.dist.rank :: self.dist.world_size]
        augment = crop_flip_params(len(order), generator).to(self.device)
        order = order.to(self.device)
        local_batch = max(1, batch // self.dist.world_size)
        steps = math.ceil(len(order) / local_batch)
        self.net.train()
        totals = torch.zeros(5, dtype=torch.float64, device=self.device)  # loss, correct, count, ratio, penalty
        mac_weights = torch.tensor(self.block_macs, dtype=torch.float32, device=self.device)
        iterator = range(steps)
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False)
        for step in iterator:
            progress = epoch + step / steps
            lr = schedules.learning_rate(optim, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.model.set_temperature(schedules.temperature(cfg["gate"], progress, epochs),
                                       schedules.noise_scale(cfg["gate"], progress, epochs))
            batch_slice = slice(step * local_batch, (step + 1) * local_batch)
            idx = order[batch_slice]
            x = to_tensor(self.images[idx], self.device)
            if cfg["data"]["augment"]:
                x = random_crop_flip(x, params=augment[batch_slice])
            y = self.labels[idx]
            logits, stats = self.net(x)
            losses = F.cross_entropy(logits, y, reduction="none")
            loss = losses.mean()
            penalty = loss.new_zeros(())
            if self.model.mode != "none":
                weight = schedules.penalty_weight(cfg["gate"], progress, epochs)
                penalty, _ = compute_penalty(stats.probs, mac_weights, cfg["gate"], weight, losses)
                penalty = penalty + collapse_penalty(stats.logits[:, self.gated], cfg["gate"])
                loss = loss + penalty + cfg["gate"]["cir_weight"] * stats.cir_loss
                loss = loss + cfg["gate"]["consistency_weight"] * stats.consistency
            if (step % 25 == 0 or step == steps - 1) and not torch.isfinite(loss):
                raise CosineGateError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower optim.lr or the gate penalty "
                    f"(now lr {lr:.4g}), then resume from {self.out / 'last.pt'} with --resume."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if optim["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), optim["grad_clip"])
            self.optimizer.step()
            with torch.no_grad():
                n = len(y)
                ratio = compute_ratio(stats.gates, mac_weights).sum() if sum(self.block_macs) else loss.new_tensor(float(n))
                totals += torch.stack([loss.detach() * n, (logits.argmax(1) == y).sum(), loss.new_tensor(float(n)), ratio, penalty.detach() * n]).double()
        loss_sum, correct, count, ratio_sum, pen_sum = self.dist.all_sum(totals.tolist())
        return {
            "train_loss": loss_sum / count,
            "train_top1": correct / count,
            "train_compute_ratio": ratio_sum / count,
            "penalty": pen_sum / count,
            "temperature": schedules.temperature(cfg["gate"], epoch + 1, epochs),
            "penalty_weight": schedules.penalty_weight(cfg["gate"], epoch + 1, epochs),
            "lr": lr,
        }

    # ---- whole run ---------------------------------------------------------
    def run(self, resume=False):
        if resume:
            self.resume()
        elif (self.out / "last.pt").exists():
            raise CosineGateError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out.")
        epochs = self.config["optim"]["epochs"]
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        for epoch in range(self.start_epoch, epochs):
            start = time.time()
            metrics = self.train_epoch(epoch)
            if self.dist.is_main:
                self._end_epoch(epoch, metrics, time.time() - start)
            self.dist.barrier()
        summary = self.finish() if self.dist.is_main else None
        self.dist.barrier()
        self.dist.close()
        return summary

    def _end_epoch(self, epoch, metrics, seconds):
        held_out = self.val_set if self.val_set is not None else self.train_set
        rep = evaluate(self.model, held_out, device=self.device)
        line = {"epoch": epoch + 1, **metrics, "seconds": seconds, "val_top1": rep["top1"],
                "val_real_savings": rep["real_savings"], "val_skip_rates": rep["skip_rates"]}
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")
        if rep["top1"] > self.best_val:
            self.best_val = rep["top1"]
            save_checkpoint(self.out / "best.pt", **self.state(epoch, rep["skip_rates"]))
        save_checkpoint(self.out / "last.pt", **self.state(epoch, rep["skip_rates"]))

    def finish(self):
        from cosinegate.plots import training_curves
        from cosinegate.training.checkpoint import model_from_checkpoint

        metrics = [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines()]
        # keep only the last record of each epoch (a run killed after writing metrics but before last.pt repeats one)
        metrics = list({m["epoch"]: m for m in metrics}.values())
        final = evaluate(self.model, self.test, device=self.device)
        best_model, best_state = model_from_checkpoint(self.out / "best.pt")
        best = evaluate(best_model.to(self.device), self.test, device=self.device)
        summary = {
            "name": self.config["name"],
            "config": self.config,
            "epochs": self.config["optim"]["epochs"],
            "data": self.config["data"]["source"],
            "hardware": hardware_label(self.device),
            "train_images": len(self.train_set),
            "final": {k: v for k, v in final.items() if k != "executed_macs_per_image"},
            "best_by_held_out": {
                "epoch": best_state["epoch"] + 1,
                "val_top1": best_state["best_val"],
                **{k: v for k, v in best.items() if k != "executed_macs_per_image"},
            },
        }
        atomic_write_json(self.out / "summary.json", summary)
        atomic_write_text(self.out / "config.json", json.dumps(self.config, indent=2) + "\n")
        training_curves(metrics, self.out / "training.png", f"{self.config['name']}: {self.config['model']['backbone']} {self.config['model']['mode']}")
        return summary


def train(config, out_dir, device="cpu", resume=False, progress=True):
    return Trainer(config, out_dir, device, progress).run(resume)
