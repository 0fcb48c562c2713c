"""Plots people would rather see than read (matplotlib, PNG, written atomically)."""

import numpy as np

from cosinegate.artifacts import atomic_path


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def training_curves(metrics, path, title="", train_augmented=False):
    """Accuracy and executed compute per epoch, and a per-block skip-rate heatmap (integer epoch ticks).

    `train_augmented`: training accuracy is measured on augmented batches, held-out accuracy is not;
    the accuracy panel says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    dots = {"marker": "o", "markersize": 4} if len(epochs) <= 30 else {}  # a short run's points (one epoch: a dot, not nothing)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    augmented = " (with augmentation)" if train_augmented else ""
    axes[0].plot(epochs, [m["train_top1"] for m in metrics], label=f"train{augmented}", **dots)
    axes[0].plot(epochs, [m["val_top1"] for m in metrics], label="held-out (no augmentation)" if train_augmented else "held-out",
                 **dots)
    axes[0].set(xlabel="epoch", ylabel="top-1", title="accuracy")
    axes[0].legend()
    if train_augmented:
        axes[0].set_title("accuracy\n(train on augmented batches, held-out without: the gap is not all overfitting)",
                          fontsize=9)
    axes[1].plot(epochs, [m["train_compute_ratio"] for m in metrics], label="train (hard gates)", **dots)
    axes[1].plot(epochs, [1 - m["val_real_savings"] for m in metrics], label="held-out executed MACs / dense", **dots)
    axes[1].set(xlabel="epoch", ylabel="compute ratio", title="executed compute", ylim=(0, 1.05))
    axes[1].legend()
    skip = np.array([m["val_skip_rates"] for m in metrics]).T
    image = axes[2].imshow(skip, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                           extent=(epochs[0] - 0.5, epochs[-1] + 0.5, -0.5, skip.shape[0] - 0.5))
    axes[2].set(xlabel="epoch", ylabel="block", title="held-out skip rate per block")
    for ax in axes:
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # one epoch: the epoch, not 0.945..1.05
        if len(epochs) <= 12:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[2].yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=axes[2])
    fig.suptitle(title, y=1.04)
    _save(fig, path)
    plt.close(fig)


def executed_macs_histogram(per_image_macs, dense_macs, path, title=""):
    """Histogram of executed MACs per image relative to the dense backbone, with the mean and dense marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio = np.asarray(per_image_macs) / dense_macs
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(ratio, bins=40, range=(0, max(1.05, float(ratio.max()) + 0.02)), color="tab:blue", alpha=0.8)
    ax.axvline(ratio.mean(), color="tab:orange", linestyle="--", label=f"mean {ratio.mean():.3f} ({(1 - ratio.mean()) * 100:.1f}% saved)")
    ax.axvline(1.0, color="black", linestyle=":", label=f"dense backbone ({dense_macs / 1e6:.2f}M MACs)")
    ax.set(xlabel="executed MACs / dense MACs", ylabel="images", title=title or "executed compute per image")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)
    plt.close(fig)
