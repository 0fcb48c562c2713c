"""The training loop: resumable, deterministic per epoch, DDP-aware, selects on a held-out split."""

import contextlib
import json
import math
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from cosinegate.artifacts import append_line, atomic_write_json, atomic_write_text, folder_lock, write_error
from cosinegate.config import DEFAULTS, merge
from cosinegate.cpuinfo import cpu_name, native_bf16
from cosinegate.data import balanced_subset, load_dataset, normalization, split_holdout
from cosinegate.data.augment import crop_flip_params, crop_padding, random_crop_flip, to_tensor
from cosinegate.data.resize import resize_note
from cosinegate.errors import CosineGateError
from cosinegate.evaluation import block_classes, evaluate
from cosinegate.macs import model_mac_table
from cosinegate.models import build_model
from cosinegate.plots import training_curves
from cosinegate.progress import make_bar
from cosinegate.schema import shown
from cosinegate.training import schedules
from cosinegate.training.checkpoint import (capture_rng, load_checkpoint, load_error_gist, model_from_checkpoint, restore_rng,
                                           save_checkpoint)
from cosinegate.training.distributed import DistContext
from cosinegate.training.init_from import apply_init, load_teacher, read_init_weights
from cosinegate.training.metrics_log import read_metrics
from cosinegate.training.penalty import block_rate_loss, block_rate_targets, collapse_penalty, compute_penalty, compute_ratio
from cosinegate.training.runtime import Runtime
from cosinegate.training.shaping import batch_shaping_loss


def _epoch_seed(seed, epoch):
    return seed * 100_003 + epoch


def hardware_label(device):
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({cpu_name()}, {platform.machine()}, {torch.get_num_threads()} threads)"


def param_groups(model, gate_lr_scale):
    """The optimizer's parameter groups: one, or with gate_lr_scale != 1 the gates' parameters as a second
    group whose learning rate is scaled (`lr_scale`) against the backbone's."""
    gates = [p for b in model.blocks if b.gate is not None for p in b.gate.parameters()]
    if gate_lr_scale == 1.0 or not gates:
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in gates}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]}, {"params": gates, "lr_scale": gate_lr_scale}]


def config_changes(old, new, prefix=""):
    """[(dotted key, old value, new value)] where two configs differ, keys in order."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append((f"{prefix}{key}", a, b))
    return changes


@dataclass(frozen=True)
class Stopped:
    """A run that stopped before its schedule's end: `done` of its `epochs` epochs are in last.pt."""

    done: int
    epochs: int


class Trainer:
    """Holds data, model and optimizer of one run in `out_dir`."""

    def __init__(self, config, out_dir, device="cpu", progress=True, runtime=None, log=None, allow_download=False):
        self.created = time.time()  # a --time-limit counts from here: loading the data is part of it
        self.config = config
        self.log = log or (lambda text: None)  # one line per epoch and the run's notes (cosinegate train: print)
        self.out = Path(out_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.runtime = runtime or Runtime()
        self.hardware = hardware_label(device)
        self.dist = DistContext.from_env(device)
        data = config["data"]
        self.image_size = data["image_size"]
        train, self.test = load_dataset(data["source"], data["root"], allow_download=allow_download, image_size=self.image_size,
                                        training=True)
        if data["subset"]:
            train = balanced_subset(train, int(data["subset"]), seed=config["seed"])
        self.train_set, val_set = split_holdout(train, data["val_fraction"], seed=config["seed"])
        self.val_set = None if val_set is None else val_set.cropped(self.image_size)  # held out: evaluated like the test split
        self.classes = train.classes
        init = read_init_weights(config["init_from"]) if config["init_from"] else None
        self.normalization = normalization.resolve(data["normalization"], self.train_set.images, init and init[1].get("normalization"))
        torch.manual_seed(config["seed"])
        self.model = build_model(config["model"], num_classes=len(self.classes), image_size=self.image_size)
        self.model.normalization = self.normalization
        self.block_macs = [b.residual for b in model_mac_table(self.model).blocks]
        self.gated = [i for i, b in enumerate(self.model.blocks) if b.gate is not None]
        self.init_report = None
        if config["init_from"]:  # phase two: start from another run's weights (a resumed run overwrites them)
            self.init_report = apply_init(self.model, *init)
        self.model = self.runtime.prepare(self.model.to(self.device))
        self.teacher = None
        if config["distill"]["weight"]:
            self.teacher = self.runtime.prepare(load_teacher(config["init_from"], self.device))
        # constants of a step, made once on the device (no host-to-device copy inside a step)
        self.gated_index = torch.tensor(self.gated, dtype=torch.long, device=self.device)
        self.mac_weights = torch.tensor(self.block_macs, dtype=torch.float32, device=self.device)
        rates = config["gate"]["block_rates"]
        self.rate_targets = None if rates is None else torch.tensor(
            [block_rate_targets(rates, len(self.block_macs))[i] for i in self.gated], dtype=torch.float32, device=self.device)
        self.net = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        optim = config["optim"]
        self.optimizer = self.runtime.optimizer(
            param_groups(self.model, optim["gate_lr_scale"]), self.device, lr=optim["lr"], momentum=optim["momentum"],
            weight_decay=optim["weight_decay"], nesterov=optim["nesterov"])
        self.images = torch.as_tensor(self.train_set.images, device=self.device)
        # stored N x N: pad by N/8 and crop N (the CIFAR recipe); stored larger (resize rule `train`): crop N inside it
        self.slack = self.train_set.images.shape[1] - self.image_size
        self.padding = 0 if self.slack else crop_padding(self.image_size)
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
            "init_from": self.init_report,
            "normalization": self.normalization,
            # the resize rule the test split used (native or eval): the board's run_engine.py applies the same
            "input_resize": self.test.rule,
            "runtime": self.runtime.as_dict(),  # how it executed (resume says where that changes the numerics)
        }

    def resume(self):
        path = self.out / "last.pt"
        if not path.is_file():
            raise CosineGateError(f"--resume given but {path} does not exist; start without --resume.")
        state = load_checkpoint(path)
        missing = [key for key in ("config", "model", "optimizer", "rng", "epoch", "best_val") if key not in state]
        if missing or type(state["best_val"]) not in (int, float):
            lacks = f"lacks {', '.join(missing)}" if missing else f"has best_val = {shown(state['best_val'], 40)}, not a number"
            raise CosineGateError(f"{path} cannot be resumed: it {lacks}; resume the last.pt train wrote, or train anew in "
                                  "another --out.")
        trained = merge(DEFAULTS, state["config"])  # a run from before a key was added still resumes
        if trained != self.config:
            changed = config_changes(trained, self.config)
            shown_changes = "; ".join(f"{key} {shown(was, 40)} there, {shown(now, 40)} here" for key, was, now in changed[:4]) \
                or "a setting left unset there and set to None here"
            raise CosineGateError(f"{path} was trained with another config ({shown_changes}"
                                  f"{'; ...' if len(changed) > 4 else ''}); resume with the same flags, or train anew in "
                                  "another --out.")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # weights or optimizer of another model
            raise CosineGateError(f"{path} cannot be resumed: its weights or optimizer state do not fit the model of its "
                                  f"config ({load_error_gist(exc)}); resume the last.pt train wrote, or train anew in another --out.") from None
        restore_rng(state["rng"])
        self.start_epoch, self.best_val = state["epoch"] + 1, state["best_val"]
        self.init_report = state.get("init_from")
        trained = state.get("runtime")  # None: a checkpoint from before it was recorded
        if trained is not None and trained != self.runtime.as_dict():
            self.log(f"note: {path} trained with {shown(trained, 120)}, this resume runs {self.runtime.as_dict()}: the "
                     "run is no longer bit-exact with one run in one go (pass the same --amp/--channels-last/--fused)")

    # ---- one step -----------------------------------------------------------
    def forward_loss(self, x, y, progress):
        """Forward and the whole training loss of one batch; returns (loss, logits, gates, penalty).

        Pure tensor work with no host synchronization, so it can run ahead of the host.
        """
        cfg, epochs = self.config, self.config["optim"]["epochs"]
        with self.runtime.autocast(self.device):
            logits, stats = self.net(x)
            teacher = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher, _ = self.teacher(x)
        logits = logits.float()
        losses = F.cross_entropy(logits, y, reduction="none", label_smoothing=cfg["optim"]["label_smoothing"])
        loss = losses.mean()
        if teacher is not None:
            weight, temp = cfg["distill"]["weight"], cfg["distill"]["temperature"]
            kd = F.kl_div(F.log_softmax(logits / temp, 1), F.log_softmax(teacher.float() / temp, 1), reduction="batchmean", log_target=True)
            loss = (1.0 - weight) * loss + weight * temp**2 * kd
        penalty = loss.new_zeros(())
        if self.model.mode != "none":
            gate = cfg["gate"]
            probs = stats.probs.float()
            ramp = schedules.penalty_ramp(gate, progress, epochs)
            if gate["penalty"]:
                penalty, _ = compute_penalty(probs, self.mac_weights, gate, gate["penalty"] * ramp, losses)
            gated_probs = probs.index_select(1, self.gated_index)
            if self.rate_targets is not None and gate["block_rate_weight"]:  # on the executed decisions (ConvNet-AIG)
                executed = stats.executed.float().index_select(1, self.gated_index)
                penalty = penalty + gate["block_rate_weight"] * ramp * block_rate_loss(executed, self.rate_targets)
            if gate["batch_shaping_weight"]:
                weight = schedules.batch_shaping_weight(gate, progress, epochs)
                penalty = penalty + weight * batch_shaping_loss(gated_probs, gate["batch_shaping_prior"])
            penalty = penalty + collapse_penalty(stats.logits.float().index_select(1, self.gated_index), gate)
            loss = loss + penalty + gate["cir_weight"] * stats.cir_loss.float()
            loss = loss + gate["consistency_weight"] * stats.consistency.float()
        return loss, logits, stats.gates, penalty

    def set_schedules(self, progress):
        """Learning rate, gate temperature, noise and blend at fractional epoch `progress`; returns the lr."""
        cfg, epochs = self.config, self.config["optim"]["epochs"]
        lr = schedules.learning_rate(cfg["optim"], progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.model.set_temperature(schedules.temperature(cfg["gate"], progress, epochs),
                                   schedules.noise_scale(cfg["gate"], progress, epochs))
        self.model.set_gate_blend(schedules.gate_blend(cfg["gate"], progress, epochs))
        return lr

    def batch(self, idx, params):
        """The augmented float batch of training images `idx` (on the device) and its labels."""
        x = to_tensor(self.images[idx], self.device, self.normalization)
        if self.config["data"]["augment"]:
            x = random_crop_flip(x, padding=self.padding, params=params, size=self.image_size)
        elif self.slack:  # stored larger than the input: its central crop
            top = self.slack // 2
            x = x[:, :, top : top + self.image_size, top : top + self.image_size]
        return self.runtime.layout(x), self.labels[idx]

    def step(self, idx, params, progress, totals):
        """One optimizer step on batch `idx`; adds loss, correct, count, executed ratio, penalty and a
        non-finite count to `totals` (a device tensor), with no host synchronization."""
        x, y = self.batch(idx, params)
        loss, logits, gates, penalty = self.forward_loss(x, y, progress)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config["optim"]["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config["optim"]["grad_clip"])
        self.optimizer.step()
        with torch.no_grad():
            n = logits.new_full((), float(len(idx)))
            ratio = compute_ratio(gates.float(), self.mac_weights).sum() if sum(self.block_macs) else n
            finite = torch.isfinite(loss)
            totals += torch.stack([torch.where(finite, loss, 0.0) * n, (logits.argmax(1) == y).sum(), n, ratio,
                                   torch.where(finite, penalty, 0.0) * n, (~finite).float()]).double()

    # ---- one epoch ---------------------------------------------------------
    def epoch_plan(self, epoch):
        """(batch index order, crop/flip params) of an epoch, both on the device; reproducible per epoch."""
        seed = _epoch_seed(self.config["seed"], epoch)
        torch.manual_seed(seed)  # Gumbel noise: reproducible per epoch, so resume is exact
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self.labels), generator=generator)[self.dist.rank :: self.dist.world_size]
        augment = crop_flip_params(len(order), generator, self.padding, self.slack).to(self.device)
        return order.to(self.device), augment

    def train_epoch(self, epoch):
        cfg, optim = self.config, self.config["optim"]
        epochs, batch = optim["epochs"], optim["batch_size"]
        order, augment = self.epoch_plan(epoch)
        local_batch = max(1, batch // self.dist.world_size)
        steps = math.ceil(len(order) / local_batch)
        self.net.train()
        totals = torch.zeros(6, dtype=torch.float64, device=self.device)  # loss, correct, count, ratio, penalty, non-finite
        iterator = make_bar(range(steps), desc=f"epoch {epoch + 1}/{epochs}", unit="step",  # on a terminal only: a
                            show=None if self.progress and self.dist.is_main else False)  # log file gets the epoch lines
        check_every = 25 if self.device.type == "cpu" else steps  # a GPU checks once per epoch: no sync inside steps
        for step in iterator:
            lr = self.set_schedules(epoch + step / steps)
            batch_slice = slice(step * local_batch, (step + 1) * local_batch)
            self.step(order[batch_slice], augment[batch_slice], epoch + step / steps, totals)
            if (step % check_every == 0 or step == steps - 1) and totals[5].item() > 0:
                raise CosineGateError(
                    f"loss became nan or inf at epoch {epoch + 1} (by step {step + 1}); lower optim.lr or the gate penalty "
                    f"(now lr {lr:.4g}), then resume from {self.out / 'last.pt'} with --resume."
                )
        loss_sum, correct, count, ratio_sum, pen_sum, _ = self.dist.all_sum(totals.tolist())
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
    def run(self, resume=False, time_limit=None, stop_after=None):
        """Train to the end (returns the summary), or, with `time_limit` seconds, stop after the last
        epoch that fits, or stop after epoch `stop_after` of the schedule (both return `Stopped`; last.pt holds
        it and --resume continues exactly there). Ranks other than the main one return None."""
        with self._claim_out():
            return self._run(resume, time_limit, stop_after)

    def _claim_out(self):
        """Rank 0: make --out, check it is writable, and hold its lock for the whole run (a second writer is refused)."""
        if not self.dist.is_main:
            return contextlib.nullcontext()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.out):
                pass
        except OSError as exc:
            raise write_error(self.out, exc) from exc
        return folder_lock(self.out, "training run")

    def _run(self, resume, time_limit, stop_after):
        if resume:
            self.resume()
        elif (self.out / "last.pt").exists():
            raise CosineGateError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out.")
        epochs = self.config["optim"]["epochs"]
        if self.dist.is_main:
            self.log(self.data_line())
            if self.train_set.found_sizes:
                self.log(resize_note(self.train_set.found_sizes, self.image_size, "training at", training=True))
            if self.runtime.amp == "bf16" and self.device.type == "cpu" and not native_bf16():
                self.log(f"note: --amp bf16 on a CPU that does not compute bf16 itself ({cpu_name()}: no AMX or AVX-512 "
                         "bf16): torch emulates it, many times slower than fp32 (ResNet-20: 12 against 224 img/s on a "
                         "2-core AMD EPYC); leave --amp out here")
        recent = self._recorded_epochs()
        for epoch in range(self.start_epoch, epochs):
            longest = max(recent[-3:], default=0.0)  # this process's epochs replace the recorded ones as they come
            out_of_time = time_limit is not None and time.time() - self.created + 1.1 * longest > time_limit
            out_of_time = out_of_time or (stop_after is not None and epoch >= stop_after)
            if self.dist.any(out_of_time):  # every rank stops at the same epoch
                self.dist.close()
                return Stopped(epoch, epochs) if self.dist.is_main else None
            start = time.time()
            metrics = self.train_epoch(epoch)
            if self.dist.is_main:
                self._end_epoch(epoch, metrics, time.time() - start)
            self.dist.barrier()
            recent.append(time.time() - start)
        summary = self.finish() if self.dist.is_main else None
        self.dist.barrier()
        self.dist.close()
        return summary

    def data_line(self):
        """What the run trains and selects on, in one line."""
        data = self.config["data"]
        held = f"{len(self.val_set)} held out ({data['val_fraction']:.0%}, for the held-out columns and best.pt)" \
            if self.val_set is not None else "none held out (the held-out columns use the training images)"
        return (f"data {data['source']}{' ' + str(data['root']) if data['root'] else ''}: {len(self.train_set)} training images, "
                f"{held}, {len(self.test)} test; {len(self.classes)} classes; {self.image_size}x{self.image_size}; "
                f"{self.config['optim']['epochs']} epochs from epoch {self.start_epoch + 1}")

    def _recorded_epochs(self):
        """Seconds of the last three epochs in this run's metrics (none for a new run), each plus 15% for evaluation
        and checkpoints: the time limit's estimate until this process has timed its own (an epoch slowed by other
        work long ago says nothing of the machine now)."""
        path = self.out / "metrics.jsonl"
        if not path.is_file():
            return []
        return [1.15 * m.get("seconds", 0.0) for m in read_metrics(path)[-3:]]

    def _end_epoch(self, epoch, metrics, seconds):
        held_out = self.val_set if self.val_set is not None else self.train_set.cropped(self.image_size)
        rep = evaluate(self.model, held_out, device=self.device)
        line = {"epoch": epoch + 1, **metrics, "seconds": seconds, "val_top1": rep["top1"],
                "val_real_savings": rep["real_savings"], "val_skip_rates": rep["skip_rates"],
                "amp": self.runtime.amp, "hardware": self.hardware}  # a resumed run may change machine and precision
        append_line(self.out / "metrics.jsonl", json.dumps(line))  # whole lines only, a killed run's partial one dropped
        self.log(epoch_line(line, self.config["optim"]["epochs"], self.model.mode != "none"))
        if rep["top1"] > self.best_val:
            self.best_val = rep["top1"]
            save_checkpoint(self.out / "best.pt", **self.state(epoch, rep["skip_rates"]))
        save_checkpoint(self.out / "last.pt", **self.state(epoch, rep["skip_rates"]))

    def finish(self):
        metrics = read_metrics(self.out / "metrics.jsonl")
        final = evaluate(self.model, self.test, device=self.device)
        best_model, best_state = model_from_checkpoint(self.out / "best.pt")
        best = evaluate(best_model.to(self.device), self.test, device=self.device)
        summary = {
            "name": self.config["name"],
            "config": self.config,
            "epochs": self.config["optim"]["epochs"],
            "data": self.config["data"]["source"],
            "hardware": self.hardware,
            "runtime": self.runtime.as_dict(),
            "init_from": self.init_report,
            "image_size": self.image_size,
            "normalization": self.normalization,
            "train_images": len(self.train_set),
            "final": {k: v for k, v in final.items() if k != "executed_macs_per_image"},
            "best_by_held_out": {
                "epoch": best_state["epoch"] + 1,
                "val_top1": best_state["best_val"],
                **{k: v for k, v in best.items() if k != "executed_macs_per_image"},
            },
        }
        atomic_write_json(self.out / "summary.json", summary)
        note = routing_note(self.model, final["skip_rates"])
        if note:
            self.log(note)
        atomic_write_text(self.out / "config.json", json.dumps(self.config, indent=2) + "\n")
        training_curves(metrics, self.out / "training.png",
                        f"{self.config['name']}: {self.config['model']['backbone']} {self.config['model']['mode']}",
                        train_augmented=bool(self.config["data"]["augment"]))
        return summary


def epoch_line(m, epochs, gated):
    """One printed line per epoch: loss, top-1, held-out top-1 and, for gated runs, savings and skip rates."""
    text = (f"epoch {m['epoch']:>3}/{epochs}  loss {m['train_loss']:.3f}  train top-1 {m['train_top1'] * 100:5.2f}%  "
            f"held-out top-1 {m['val_top1'] * 100:5.2f}%")
    if gated:
        skips = " ".join(f"{r * 100:.0f}" for r in m["val_skip_rates"])
        text += f"  savings {m['val_real_savings'] * 100:4.1f}%  skip % [{skips}]"
    return text + f"  {m['seconds']:.0f} s"


def routing_note(model, skip_rates):
    """A warning when a gated model's routing is not dynamic on the test split (None when it is, or for dense)."""
    if model.mode == "none":
        return None
    gated = [i for i, b in enumerate(model.blocks) if b.gate is not None]
    kinds = [block_classes(skip_rates)[i] for i in gated]
    if "dynamic" in kinds:
        return None
    skipped = [i for i, k in zip(gated, kinds) if k == "always_skipped"]
    if not skipped:
        return ("WARNING: no gated block ever skipped on the test split: the model is the dense network (a conditional graph "
                "would have no If). Train longer, or raise gate.penalty / lower gate.target or gate.block_rates.")
    return (f"WARNING: no block is dynamic: blocks {skipped} are always skipped and the rest always run, i.e. static pruning "
            "(cosinegate train --drop-blocks gives that network without gates). Lower gate.penalty or raise gate.min_rate.")


def train(config, out_dir, device="cpu", resume=False, progress=True, runtime=None, time_limit=None, stop_after=None, log=None,
          allow_download=False):
    """Train (or resume) one run; allow_download lets a missing CIFAR-10 be fetched into the config's data root
    (cosinegate train: only a --data-root its user gave on the command line, never one a config file names)."""
    return Trainer(config, out_dir, device, progress, runtime, log, allow_download).run(resume, time_limit, stop_after)
