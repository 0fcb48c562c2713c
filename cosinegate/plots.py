"""Plots people would rather see than read (matplotlib, PNG, written atomically)."""

import numpy as np

from cosinegate.artifacts import atomic_path


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def training_curves(metrics, path, title=""):
    """Accuracy and executed compute per epoch, and a per-block skip-rate heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(epochs, [m["train_top1"] for m in metrics], label="train")
    axes[0].plot(epochs, [m["val_top1"] for m in metrics], label="held-out")
    axes[0].set(xlabel="epoch", ylabel="top-1", title="accuracy")
    axes[0].legend()
    axes[1].plot(epochs, [m["train_compute_ratio"] for m in metrics], label="train (hard gates)")
    axes[1].plot(epochs, [1 - m["val_real_savings"] for m in metrics], label="held-out executed MACs / dense")
    axes[1].set(xlabel="epoch", ylabel="compute ratio", title="executed compute", ylim=(0, 1.05))
    axes[1].legend()
    skip = np.array([m["val_skip_rates"] for m in metrics]).T
    image = axes[2].imshow(skip, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                           extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, skip.shape[0] - 0.5))
    axes[2].set(xlabel="epoch", ylabel="block", title="held-out skip rate per block")
    fig.colorbar(image, ax=axes[2])
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def executed_macs_histogram(per_image_macs, dense_macs, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(np.asarray(per_image_macs) / dense_macs, bins=40, range=(0, 1.05))
    ax.set(xlabel="executed MACs / dense MACs", ylabel="images", title=title or "executed compute per image")
    _save(fig, path)
    plt.close(fig)
