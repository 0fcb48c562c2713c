"""Analytic multiply-accumulate (MAC) counts per layer of a CosineGateNet.

Counted: convolutions (k*k*Cin*Cout*Hout*Wout), linear layers (in*out), and for
gates the average pooling (C*H*W accumulates) plus, in paper mode, CIR (3*C*H*W:
one dot product and two squared norms). BatchNorm is folded into the
convolutions at deployment and ReLU/add are not MACs, so neither is counted.
Option-A shortcuts cost 0 MACs; ResNet-20 dense is 40,551,040 MACs (40.55M).
"""

from dataclasses import dataclass

from cosinegate.models.backbones import backbone_spec


@dataclass(frozen=True)
class BlockMacs:
    residual: int  # F(x): the part a skipped block saves
    shortcut: int
    gate: int  # controller (+ CIR in paper mode); 0 for dense or dropped blocks


@dataclass(frozen=True)
class MacTable:
    stem: int
    blocks: tuple
    classifier: int

    @property
    def dense(self):
        """MACs of the same backbone without gates, every block run."""
        return self.stem + self.classifier + sum(b.residual + b.shortcut for b in self.blocks)

    def executed(self, ran, mode):
        """MACs of one image given its hard decisions `ran` (one bool per block).

        A skipped block costs its shortcut and gate; in paper mode F(x) and CIR are
        computed before the decision, so a skipped block costs everything.
        """
        total = self.stem + self.classifier
        for block, r in zip(self.blocks, ran):
            total += block.shortcut + block.gate
            if r or mode == "paper":
                total += block.residual
        return total


def conv_macs(cin, cout, k, out_size):
    return cin * cout * k * k * out_size * out_size


def linear_macs(cin, cout):
    return cin * cout


def gate_macs(mode, block, gate_hidden):
    pool = block.in_channels * block.in_size * block.in_size
    if mode == "predictive":
        return pool + linear_macs(block.in_channels, gate_hidden) + 2 * gate_hidden
    if mode == "paper":
        controller = linear_macs(block.in_channels, 64) + linear_macs(64, 32) + 32
        cir = 3 * block.out_channels * block.out_size * block.out_size
        return pool + controller + cir
    return 0


def mac_table(backbone, mode="none", num_classes=10, drop_blocks=(), gate_hidden=16):
    spec = backbone_spec(backbone)
    blocks = []
    for b in spec.blocks:
        dropped = b.index in drop_blocks
        residual = 0 if dropped else conv_macs(b.in_channels, b.out_channels, 3, b.out_size) + conv_macs(
            b.out_channels, b.out_channels, 3, b.out_size
        )
        shortcut = conv_macs(b.in_channels, b.out_channels, 1, b.out_size) if b.changes_shape and spec.shortcut == "B" else 0
        gate = 0 if dropped else gate_macs(mode, b, gate_hidden)
        blocks.append(BlockMacs(residual, shortcut, gate))
    stem = conv_macs(3, spec.stem_channels, 3, spec.image_size)
    return MacTable(stem, tuple(blocks), linear_macs(spec.feature_channels, num_classes))


def model_mac_table(model):
    """The MacTable of a built model; its ungated blocks (always run, no gate) cost no gate MACs."""
    table = mac_table(model.backbone, model.mode, model.num_classes, model.drop_blocks, _gate_hidden(model))
    ungated = set(getattr(model, "ungated_blocks", ()))
    blocks = tuple(BlockMacs(b.residual, b.shortcut, 0) if i in ungated else b for i, b in enumerate(table.blocks))
    return MacTable(table.stem, blocks, table.classifier)


def _gate_hidden(model):
    for block in model.blocks:
        if block.gate is not None and hasattr(block.gate, "hidden"):
            return block.gate.hidden.out_features
    return 16
