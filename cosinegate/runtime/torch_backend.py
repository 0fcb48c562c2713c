"""The PyTorch runner: a checkpoint run on the CPU the way a deployed graph runs it (the parity reference and
the bench's torch backend).

Polygraphy's own PytRunner moves inputs to CUDA unconditionally, so the toolkit has this CPU runner. It follows
per-block kinds (an exported graph's ONNX metadata): ``dynamic`` blocks run the model's own GatedBlock forward
(gate as decided, or the fixed value of a ``dense``/``dropped`` block); static blocks follow the fixed policy
(``always_run``: executed, gate 1; ``always_skipped``: shortcut only, gate 0); the flat twin's ``gated`` blocks run
their residual branch regardless and report their gate's decision. With no kinds given the runner is the model's
own forward. With ``record=True`` the gates' own decisions of every ``infer`` are kept in ``own_decisions``, to
measure how often a fixed policy disagrees with them.
"""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from cosinegate.graphmeta import GATES, INPUT, LOGITS
from cosinegate.models.gates import cosine_incongruity
from cosinegate.runtime.base import Runner

RUN, SKIP = 1.0, 0.0


class TorchRunner(Runner):
    """``model``: a checkpoint path or the model itself. ``kinds``: per block (default: the model's own:
    ``dynamic``, or ``dense``/``dropped`` for blocks without a gate). ``threads``: torch intra-op threads while
    active (small batches on a busy CPU are many times slower with OpenMP threads competing: measured 16 ms vs
    80-475 ms per image). ``batch``: the input's first dimension in ``input_metadata`` (None: any)."""

    name = "pytorch"

    def __init__(self, model, kinds=None, threads=1, batch=None, record=False, name=None):
        super().__init__(name)
        self.source = model
        self.model = None if isinstance(model, (str, Path)) else model.eval()
        self.kinds = list(kinds) if kinds is not None else None
        self.threads, self.batch, self.record = threads, batch, record
        self.own_decisions = []
        self._saved_threads = None

    def _activate(self):
        if self.model is None:
            from cosinegate.training.checkpoint import model_from_checkpoint

            self.model, _ = model_from_checkpoint(self.source)
        if self.kinds is None:
            self.kinds = [own_kind(block) for block in self.model.blocks]
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def _deactivate(self):
        torch.set_num_threads(self._saved_threads)

    def input_metadata(self):
        spec = self.model.spec
        return OrderedDict([(INPUT, (np.float32, (self.batch or -1, spec.in_channels, spec.image_size, spec.image_size)))])

    def _infer(self, feed):
        logits, gates, own = self.run_blocks(feed[INPUT])
        if self.record:
            self.own_decisions.append(own)
        return OrderedDict([(LOGITS, logits), (GATES, gates)])

    @torch.inference_mode()
    def run_blocks(self, x):
        """Input [N, C, S, S] -> (logits, reported gates, the gates' own decisions), numpy."""
        x = self.model.stem(torch.as_tensor(x))
        reported, own = [], []
        for block, kind in zip(self.model.blocks, self.kinds):
            x, report, decision = _block(block, kind, x)
            reported.append(report)
            own.append(decision)
        logits = self.model.fc(x.mean(dim=(2, 3)))
        return logits.numpy(), torch.stack(reported, 1).numpy(), torch.stack(own, 1).numpy()


def own_kind(block):
    """A block's kind in the model itself: dynamic (gated), dense (no gate) or dropped."""
    return "dropped" if block.dropped else "dynamic" if block.gate is not None else "dense"


def _block(block, kind, x):
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
