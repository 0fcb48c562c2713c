"""The GPU speed path, checked on the CPU: bf16 autocast, channels_last and fused SGD change how a step runs, not
what it computes (within precision); a time-limited run stops after whole epochs and resumes bit-exactly."""

import types

import pytest
import torch

from conftest import tiny_config
from cosinegate.training import loop
from cosinegate.training.checkpoint import load_checkpoint
from cosinegate.training.runtime import Runtime


def _first_batch_loss(trainer):
    trainer.set_schedules(0.5)
    x, y = trainer.batch(torch.arange(32), torch.zeros(32, 3, dtype=torch.long))
    torch.manual_seed(0)
    return trainer.forward_loss(x, y, 0.5)


@pytest.fixture(scope="module")
def config(fake_cifar_root):
    return tiny_config(fake_cifar_root, epochs=1)


def test_bf16_and_channels_last_keep_the_loss(config, tmp_path):
    reference, logits, _, _ = _first_batch_loss(loop.Trainer(config, tmp_path / "a", progress=False))
    last, last_logits, _, _ = _first_batch_loss(loop.Trainer(config, tmp_path / "b", progress=False,
                                                             runtime=Runtime(channels_last=True)))
    torch.testing.assert_close(last_logits, logits, rtol=1e-4, atol=1e-4)
    trainer = loop.Trainer(config, tmp_path / "c", progress=False, runtime=Runtime(amp="bf16"))
    bf16, bf16_logits, _, _ = _first_batch_loss(trainer)
    assert bf16.dtype == torch.float32 and all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert bf16.item() == pytest.approx(reference.item(), rel=0.03) and bf16.item() != reference.item()
    assert (bf16_logits.argmax(1) == logits.argmax(1)).float().mean() > 0.8


def test_fused_sgd_takes_the_same_step(config, tmp_path):
    params = {}
    for fused in (False, True):
        trainer = loop.Trainer(config, tmp_path / str(fused), progress=False, runtime=Runtime(fused=fused))
        assert trainer.optimizer.defaults.get("fused") is (True if fused else None)
        totals = torch.zeros(6, dtype=torch.float64)
        torch.manual_seed(0)
        trainer.step(torch.arange(32), torch.zeros(32, 3, dtype=torch.long), 0.5, totals)
        params[fused] = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        assert totals[2].item() == 32 and totals[5].item() == 0  # count, no non-finite loss
    torch.testing.assert_close(params[True], params[False], rtol=1e-5, atol=1e-6)


def test_time_limit_stops_after_whole_epochs_and_resumes_exactly(fake_cifar_root, tmp_path, monkeypatch):
    """A clock that advances 100 s per epoch: with 150 s the run trains epoch 1, sees that epoch 2 would not fit,
    stops with last.pt at epoch 1; resuming finishes it bit-identical to an uninterrupted run."""
    config = tiny_config(fake_cifar_root, epochs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # both runs on the same thread count: conv backward sums in a thread-dependent order
    try:
        loop.train(config, tmp_path / "full", progress=False)
        clock = [0.0]
        monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=lambda: clock[0]))
        train_epoch = loop.Trainer.train_epoch

        def slow_epoch(self, epoch):
            clock[0] += 100.0
            return train_epoch(self, epoch)

        monkeypatch.setattr(loop.Trainer, "train_epoch", slow_epoch)
        out = tmp_path / "run"
        assert loop.train(config, out, progress=False, time_limit=150.0) == loop.Stopped(1, config["optim"]["epochs"])
        assert load_checkpoint(out / "last.pt")["epoch"] == 0 and not (out / "summary.json").exists()
        summary = loop.train(config, out, progress=False, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert summary is not None and summary["runtime"] == Runtime().as_dict()
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(out / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_the_time_limit_estimates_from_this_processs_epochs_once_it_has_them(fake_cifar_root, tmp_path, monkeypatch):
    """Campaign chunk: the run's last recorded epoch took 1107 s (beside heavy work, a session earlier), later ones 330 s;
    the estimate stayed at the slow one for the whole resumed run, which stopped 3 epochs short with 21 minutes
    left. A clock of 100 s per epoch, one recorded epoch of 500 s: with 1000 s the resumed run trains all 6 epochs
    left (the slow one leaves the last-three window after 3 of them); held at 1.15 x 500 s it stopped after 4."""
    config = tiny_config(fake_cifar_root, epochs=8)
    clock = [0.0]
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=lambda: clock[0]))
    train_epoch = loop.Trainer.train_epoch
    slow = {1}  # 0-based epochs that take 500 s

    def timed_epoch(self, epoch):
        clock[0] += 500.0 if epoch in slow else 100.0
        return train_epoch(self, epoch)

    monkeypatch.setattr(loop.Trainer, "train_epoch", timed_epoch)
    out = tmp_path / "run"
    assert loop.train(config, out, progress=False, stop_after=2) == loop.Stopped(2, 8)
    summary = loop.train(config, out, progress=False, resume=True, time_limit=1000.0)
    assert not isinstance(summary, loop.Stopped) and summary["epochs"] == 8, summary
