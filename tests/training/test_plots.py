"""The training curves of a short run show its points, on its own epochs."""

from cosinegate import plots


def _metrics(epochs):
    return [{"epoch": e, "train_top1": 0.3, "val_top1": 0.25, "train_compute_ratio": 0.8, "val_real_savings": 0.15,
             "val_skip_rates": [0.1, 0.2]} for e in range(1, epochs + 1)]


def test_a_one_epoch_run_is_a_dot_on_its_epoch(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig))
    plots.training_curves(_metrics(1), tmp_path / "t.png")
    accuracy, compute, skip = saved[0].axes[:3]
    assert all(line.get_marker() == "o" for line in accuracy.lines + compute.lines)  # one point: a line would draw nothing
    assert all(ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1] for ax in (accuracy, compute, skip))
    plots.training_curves(_metrics(40), tmp_path / "t.png")
    assert saved[1].axes[0].lines[0].get_marker() in ("None", None, "")  # a long run: a plain line
