"""The PyTorch side of parity: the checkpoint run the way a deployed graph runs it.

Polygraphy's own PytRunner moves inputs to CUDA unconditionally, so this module
has a small CPU-capable BaseRunner. The reference follows the graph's per-block
kinds (ONNX metadata): `dynamic` blocks run the model's own GatedBlock forward;
static blocks follow the fixed policy (`always_run`: executed, gate 1;
`always_skipped`: shortcut only, gate 0); the flat twin's `gated` blocks run
their residual branch regardless and report their gate's decision. The gate's
own decision is also recorded for every block, to measure how often a fixed
policy disagrees with it.
"""

import time
from collections import OrderedDict

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from cosinegate.models.gates import cosine_incongruity
from cosinegate.onnx.export import GATES, INPUT, LOGITS

RUN, SKIP = 1.0, 0.0


class TorchReference:
    """Callable: input [N, 3, 32, 32] -> (logits, reported gates, own gate decisions), numpy."""

    def __init__(self, model, kinds):
        self.model = model.eval()
        self.kinds = list(kinds)

    @torch.no_grad()
    def __call__(self, x):
        x = self.model.stem(torch.as_tensor(x))
        reported, own = [], []
        for block, kind in zip(self.model.blocks, self.kinds):
            x, report, decision = self._block(block, kind, x)
            reported.append(report)
            own.append(decision)
        logits = self.model.fc(x.mean(dim=(2, 3)))
        return logits.numpy(), torch.stack(reported, 1).numpy(), torch.stack(own, 1).numpy()

    def _block(self, block, kind, x):
        n = x.shape[0]
        if kind in ("dynamic", "dense", "dropped"):
            y, stats = block(x)
            fixed = x.new_full((n,), RUN if kind == "dense" else SKIP)
            gates = stats.get("gates", fixed)
            return y, gates, gates
        s, f = block.shortcut(x), block.residual(x)
        decision = own_decision(block, x, s, f)
        if kind == "gated":  # flat twin: the branch always runs, the gate reports
            return block.post(s + f), decision, decision
        if kind == "always_run":
            return block.post(s + f), x.new_full((n,), RUN), decision
        if kind == "always_skipped":
            return block.post(s), x.new_full((n,), SKIP), decision
        raise ValueError(f"unknown block kind {kind!r}")


def own_decision(block, x, s, f):
    """The block's hard gate decision as float [N] (1 = run)."""
    gate = block.gate
    if gate.needs_residual:
        logit = gate.logit(x, cosine_incongruity(s, f))
    else:
        logit, _ = gate(x)
    return gate.decide(logit).to(x.dtype)


class TorchRunner(BaseRunner):
    """Polygraphy runner for a TorchReference on the CPU; keeps the gates' own decisions."""

    def __init__(self, reference, input_shape, name="pytorch", threads=1):
        super().__init__(name=name)
        self.reference = reference
        self.input_shape = tuple(input_shape)
        self.threads = threads
        self.own_decisions = []
        self._saved_threads = None

    def activate_impl(self):
        """Run with `threads` intra-op threads while active: small batches on a busy CPU are
        many times slower with OpenMP threads competing (measured 16 ms vs 80-475 ms per image)."""
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def deactivate_impl(self):
        torch.set_num_threads(self._saved_threads)

    def get_input_metadata_impl(self):
        return TensorMetadata().add(INPUT, np.float32, self.input_shape)

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        logits, gates, own = self.reference(feed_dict[INPUT])
        self.inference_time = time.perf_counter() - start
        self.own_decisions.append(own)
        return OrderedDict([(LOGITS, logits), (GATES, gates)])
