"""Evaluation with hard decisions: accuracy, executed MACs, savings, and how dynamic the routing is."""

from dataclasses import dataclass

import numpy as np
import torch

from cosinegate.blockkinds import block_classes
from cosinegate.data.augment import to_tensor
from cosinegate.macs import mac_table, model_mac_table


@dataclass
class Decisions:
    """Per-image results of one evaluation pass."""

    predictions: np.ndarray  # [N]
    labels: np.ndarray  # [N]
    gates: np.ndarray  # [N, B] bool, True = block ran
    probs: np.ndarray  # [N, B] gate probabilities
    logits: np.ndarray  # [N, classes]


@torch.no_grad()
def run_model(model, images, batch_size=256, device="cpu", progress=False):
    """Evaluate `model` (eval mode, hard decisions) on an ImageSet."""
    model.eval()
    preds, gates, probs, logits = [], [], [], []
    starts = range(0, len(images), batch_size)
    if progress:  # on a terminal only (cosinegate.progress)
        from cosinegate.progress import make_bar

        starts = make_bar(starts, desc="evaluate", unit="batch")
    for start in starts:
        x = to_tensor(images.images[start : start + batch_size], device, model.normalization)
        out, stats = model(x)
        logits.append(out.float().cpu().numpy())
        preds.append(out.argmax(1).cpu().numpy())
        gates.append(stats.gates.cpu().numpy() > 0.5)
        probs.append(stats.probs.float().cpu().numpy())
    return Decisions(np.concatenate(preds), images.labels, np.concatenate(gates), np.concatenate(probs), np.concatenate(logits))


def mutual_information_bits(decisions, labels, num_classes):
    """I(decision; label) in bits for one block's binary decisions."""
    joint = np.zeros((2, num_classes))
    np.add.at(joint, (decisions.astype(int), labels), 1)
    joint /= joint.sum()
    pd, pl = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (pd @ pl)[nz])).sum())


def report(model, decisions, classes):
    """The evaluation report as a JSON-ready dict."""
    table = model_mac_table(model)
    ran = decisions.gates
    skip_rates = 1.0 - ran.mean(0)
    per_image = np.array([table.executed(row) for row in ran], dtype=np.float64)
    full = mac_table(model.backbone, "none", model.num_classes, image_size=model.image_size)  # the whole backbone: dropped blocks count as saved
    dense = full.dense
    kinds = block_classes(skip_rates)
    saved = np.array([b.residual for b in full.blocks], dtype=np.float64) * skip_rates
    gate_cost = sum(b.gate for b in table.blocks)
    if model.mode == "paper":
        saved[:] = 0.0
    num_classes = len(classes)
    per_class = [(1.0 - ran[decisions.labels == c].mean(0)).tolist() if (decisions.labels == c).any() else None for c in range(num_classes)]
    gated = model.mode != "none"
    return {
        "mode": model.mode,
        "backbone": model.backbone,
        "drop_blocks": list(model.drop_blocks),
        "num_images": int(len(decisions.labels)),
        "top1": float((decisions.predictions == decisions.labels).mean()),
        "dense_macs": int(dense),
        "executed_macs": float(per_image.mean()),
        "gate_macs": int(gate_cost),
        "real_savings": float(1.0 - per_image.mean() / dense),
        "nominal_savings": float(1.0 - decisions.probs.mean()) if gated else 0.0,
        "nominal_savings_note": "paper's figure: 1 - mean gate probability, unweighted over blocks; not a compute measure",
        "skip_rates": skip_rates.tolist(),
        "block_classes": kinds,
        "static_savings": float(sum(s for s, k in zip(saved, kinds) if k == "always_skipped") / dense),
        "dynamic_savings": float(sum(s for s, k in zip(saved, kinds) if k == "dynamic") / dense),
        "executed_macs_distribution": {
            "mean": float(per_image.mean()),
            "std": float(per_image.std()),
            **{f"p{q}": float(np.percentile(per_image, q)) for q in (5, 25, 50, 75, 95)},
        },
        "executed_macs_per_image": per_image.tolist(),
        "per_class_skip_rates": dict(zip(classes, per_class)),
        "mutual_information_bits": [mutual_information_bits(ran[:, b], decisions.labels, num_classes) for b in range(ran.shape[1])],
        "saves_compute": model.mode == "predictive",
        "compute_note": (
            "paper mode computes F(x) before deciding, so skipping saves no compute" if model.mode == "paper" else ""
        ),
    }


def evaluate(model, images, batch_size=256, device="cpu", progress=False):
    return report(model, run_model(model, images, batch_size, device, progress), images.classes)


def format_table(rep):
    """A readable multi-line summary of a report."""
    lines = [
        f"backbone {rep['backbone']}  mode {rep['mode']}  images {rep['num_images']}",
        f"top-1                 {rep['top1'] * 100:.2f} %",
        f"dense MACs            {rep['dense_macs'] / 1e6:.3f} M",
        f"executed MACs/image   {rep['executed_macs'] / 1e6:.3f} M (gates cost {rep['gate_macs'] / 1e6:.3f} M)",
        f"real savings          {rep['real_savings'] * 100:.2f} %  (static {rep['static_savings'] * 100:.2f} %, dynamic {rep['dynamic_savings'] * 100:.2f} %)",
        f"nominal savings       {rep['nominal_savings'] * 100:.2f} %  [paper's nominal figure, 1 - mean gate probability]",
    ]
    if rep["compute_note"]:
        lines.append(f"NOTE: {rep['compute_note']}")
    lines.append("block  skip-rate  class           MI(bits)")
    for i, (s, k, mi) in enumerate(zip(rep["skip_rates"], rep["block_classes"], rep["mutual_information_bits"])):
        lines.append(f"{i:5d}  {s * 100:8.2f}%  {k:14s}  {mi:.4f}")
    return "\n".join(lines)
