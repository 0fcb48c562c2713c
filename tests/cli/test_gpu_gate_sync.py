"""deploy/gpu_gate_sync.py: the dense and forced-open paths compute the network; the CPU dry run writes its table."""

import json

import torch


import cosinegate.cli.gpu_gate_sync as gpu_gate_sync  # noqa: E402


def test_dense_and_open_paths_match_the_network(tiny_checkpoint):
    from cosinegate.bench.host_sync import dense_forward, open_gates_forward
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(tiny_checkpoint)
    for block in model.blocks:  # every gate open: the gated network is the dense one
        if block.gate is not None:
            torch.nn.init.constant_(block.gate.control_head.bias, 100.0)
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        logits, stats = model(x)
        assert bool(stats.gates.all())
        torch.testing.assert_close(dense_forward(model, x), logits)
        torch.testing.assert_close(open_gates_forward(model, x), logits)


def test_cpu_dry_run(tiny_checkpoint, fake_cifar_root, tmp_path):
    out = tmp_path / "g.json"
    assert gpu_gate_sync.main(["--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--iterations", "3", "--warmup", "1",
                               "--samples", "4", "--data", "cifar10", "--data-root", str(fake_cifar_root), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"dense eager", "gated, host sync per gate", "gated, gates forced open"}
    assert report["gates"] == 9 and report["input"] == [1, 3, 32, 32] and 0.0 <= report["skip_rate"] <= 1.0


def test_random_input_dry_run_of_an_untrained_backbone(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert gpu_gate_sync.main(["--backbone", "resnet20", "--device", "cpu", "--iterations", "2", "--warmup", "1",
                               "--samples", "2", "--random-input", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["data"] == "random (speed only)" and "untrained" in report["model"]
    assert "untrained predictive resnet20 (speed only)" in capsys.readouterr().out
