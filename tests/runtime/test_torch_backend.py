"""The PyTorch runner: a checkpoint (or model) on the CPU, the model's own forward or a graph's block kinds."""

import numpy as np
import pytest
import torch

from cosinegate.data.augment import to_tensor
from cosinegate.runtime.torch_backend import TorchRunner
from cosinegate.training.checkpoint import model_from_checkpoint


@pytest.fixture(scope="module")
def model(dyn_checkpoint):
    return model_from_checkpoint(dyn_checkpoint)[0]


@pytest.fixture(scope="module")
def x(test_images):
    return to_tensor(test_images.images[:8]).numpy()


def test_with_its_own_kinds_it_is_the_model_forward(dyn_checkpoint, model, x):
    with TorchRunner(dyn_checkpoint) as runner:  # from the checkpoint path
        outputs = runner.infer({"input": x})
    assert list(outputs) == ["logits", "gates"]
    with torch.no_grad():
        logits, stats = model(torch.from_numpy(x))
    np.testing.assert_array_equal(outputs["logits"], logits.numpy())
    np.testing.assert_array_equal(outputs["gates"], stats.gates.numpy())


def test_static_kinds_follow_the_policy_and_the_own_decisions_are_kept(model, x):
    kinds = ["dynamic"] * model.num_blocks
    kinds[2], kinds[3] = "always_run", "always_skipped"
    with TorchRunner(model, record=True) as own, TorchRunner(model, kinds, record=True) as policy:
        free, fixed = own.infer({"input": x}), policy.infer({"input": x})
    assert (fixed["gates"][:, 2] == 1).all() and (fixed["gates"][:, 3] == 0).all()
    np.testing.assert_array_equal(fixed["gates"][:, :2], free["gates"][:, :2])  # the blocks before are the same
    np.testing.assert_array_equal(policy.own_decisions[0][:, 2], free["gates"][:, 2])  # block 2's gate, as it decided
    assert len(own.own_decisions) == 1 and len(policy.own_decisions) == 1
    with TorchRunner(model) as plain:
        plain.infer({"input": x})
    assert plain.own_decisions == []  # nothing kept unless asked


def test_threads_are_set_while_active_and_restored(model, x):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with TorchRunner(model, threads=1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_polygraphy_view_checks_the_batch(model, x):
    from polygraphy.comparator import Comparator

    runner = TorchRunner(model, batch=8, name="reference")
    results = Comparator.run([runner.polygraphy()], data_loader=[{"input": x}])
    assert results[0][0] == "reference" and results[0][1][0]["gates"].shape == (8, model.num_blocks)
    with pytest.raises(Exception, match="shape|Shape"):
        Comparator.run([TorchRunner(model, batch=4).polygraphy()], data_loader=[{"input": x}])


def test_blocks_without_a_gate_report_their_fixed_value(dyn_checkpoint, x):
    from cosinegate.models import build_model
    from cosinegate.training.checkpoint import load_checkpoint

    state = load_checkpoint(dyn_checkpoint)
    dense = build_model(dict(state["config"]["model"], mode="none"), state["num_classes"]).eval()
    with TorchRunner(dense) as runner:
        gates = runner.infer({"input": x})["gates"]
    with torch.no_grad():
        _, stats = dense(torch.from_numpy(x))
    assert (gates == 1).all()
    np.testing.assert_array_equal(gates, stats.gates.numpy())
