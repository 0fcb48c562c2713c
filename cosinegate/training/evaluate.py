"""A checkpoint evaluated with hard gate decisions on its own data (cosinegate.evaluation's report, with its sources)."""

from cosinegate.evaluation import evaluate


def evaluate_checkpoint(checkpoint, backbone=None, image_size=None, data=None, data_root=None, split="test", subset=None,
                        device="cpu", progress=True, log=None):
    """The report of `evaluate` on the checkpoint's own data (unless `data`/`data_root` say otherwise), with where it
    came from: checkpoint, data record, split, epochs trained, input size and normalization. `backbone`: refuse a
    checkpoint holding another one."""
    from cosinegate.data import balanced_subset
    from cosinegate.data.choice import DataOrigin, choose_data
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, state = model_from_checkpoint(checkpoint, backbone, image_size)
    chosen = choose_data(DataOrigin.of_checkpoint(state), data, data_root, log=log)
    images = chosen.test if split == "test" else chosen.train
    if subset:
        images = balanced_subset(images, subset)
    rep = evaluate(model.to(device), images, device=device, progress=progress)
    rep.update({"checkpoint": str(checkpoint), "data": chosen.record(), "split": split, "epochs_trained": state["epoch"] + 1,
                "image_size": model.image_size, "normalization": model.normalization})
    return rep
