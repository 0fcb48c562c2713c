"""Analytic multiply-accumulate (MAC) counts per layer of a CosineGateNet.

Counted: convolutions (k*k*Cin*Cout*Hout*Wout), linear layers (in*out), and for
gates the average pooling (C*H*W accumulates) plus, in paper mode, CIR (3*C*H*W:
one dot product and two squared norms). BatchNorm is folded into the
convolutions at deployment and ReLU/add are not MACs, so neither is counted.
Option-A shortcuts cost 0 MACs; ResNet-20 dense is 40,551,040 MACs (40.55M) at 32x32.
Max-pooling is comparisons, not MACs. ImageNet ResNets at 224x224 with 1000 classes:
ResNet-18 1.814G, ResNet-34 3.664G, ResNet-50 4.089G (torchvision: 1.82/3.67/4.09 GFLOPS).
"""

from dataclasses import dataclass

from cosinegate.graphmeta import block_kinds
from cosinegate.models.backbones import backbone_spec


@dataclass(frozen=True)
class BlockMacs:
    residual: int  # F(x): the part a skipped block saves
    shortcut: int
    gate: int  # controller (+ CIR in paper mode); 0 for dense or dropped blocks
    computed: bool = False  # F(x) runs whatever the gate decides (paper mode; a masked or flat graph's gated block)


@dataclass(frozen=True)
class MacTable:
    stem: int
    blocks: tuple
    classifier: int

    @property
    def dense(self):
        """MACs of the same backbone without gates, every block run."""
        return self.stem + self.classifier + sum(b.residual + b.shortcut for b in self.blocks)

    def executed(self, ran):
        """MACs of one image given its hard decisions `ran` (one bool per block).

        A skipped block costs its shortcut and gate, and its F(x) too where that is computed before or beside the
        decision (paper mode: CIR needs F(x); a masked graph multiplies F(x) by the decision).
        """
        total = self.stem + self.classifier
        for block, r in zip(self.blocks, ran):
            total += block.shortcut + block.gate
            if r or block.computed:
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


def residual_macs(b):
    """MACs of F(x) of one block: basic 3x3 + 3x3; bottleneck 1x1 (at the input size) + 3x3 + 1x1."""
    if b.kind == "bottleneck":
        return (conv_macs(b.in_channels, b.mid_channels, 1, b.in_size) + conv_macs(b.mid_channels, b.mid_channels, 3, b.out_size)
                + conv_macs(b.mid_channels, b.out_channels, 1, b.out_size))
    return conv_macs(b.in_channels, b.out_channels, 3, b.out_size) + conv_macs(b.out_channels, b.out_channels, 3, b.out_size)


def mac_table(backbone, mode="none", num_classes=10, drop_blocks=(), gate_hidden=16, image_size=None):
    """MacTable of a backbone at `image_size` (default: the backbone's usual size)."""
    spec = backbone_spec(backbone, image_size)
    blocks = []
    for b in spec.blocks:
        dropped = b.index in drop_blocks
        residual = 0 if dropped else residual_macs(b)
        shortcut = conv_macs(b.in_channels, b.out_channels, 1, b.out_size) if b.changes_shape and spec.shortcut == "B" else 0
        gate = 0 if dropped else gate_macs(mode, b, gate_hidden)
        blocks.append(BlockMacs(residual, shortcut, gate, mode == "paper" and not dropped))
    stem = conv_macs(spec.in_channels, spec.stem_channels, spec.stem_kernel, spec.stem_conv_size)  # the max-pool is no MACs
    return MacTable(stem, tuple(blocks), linear_macs(spec.feature_channels, num_classes))


def model_mac_table(model):
    """The MacTable of a built model; its ungated blocks (always run, no gate) cost no gate MACs."""
    table = mac_table(model.backbone, model.mode, model.num_classes, model.drop_blocks, gate_hidden_of(model), model.image_size)
    ungated = set(getattr(model, "ungated_blocks", ()))
    blocks = tuple(BlockMacs(b.residual, b.shortcut, 0) if i in ungated else b for i, b in enumerate(table.blocks))
    return MacTable(table.stem, blocks, table.classifier)


def graph_mac_table(meta, num_classes=None):
    """The MacTable of what an exported graph computes: its model's (`metadata_mac_table`) with the export's
    deployed kinds applied. A block the policy fixed (always run or always skipped) lost its gate head; a gated
    block of a masked or flat graph computes F(x) whatever its gate decides (conditional, compact: only if it ran)."""
    table = metadata_mac_table(meta, num_classes)
    kinds = block_kinds(meta)
    every = meta.get("form") in ("masked", "flat")
    blocks = []
    for i, b in enumerate(table.blocks):
        kind = kinds[i] if i < len(kinds) else None
        if kind in ("always_run", "always_skipped"):
            b = BlockMacs(b.residual, b.shortcut, 0)
        elif kind in ("gated", "dynamic") and every:
            b = BlockMacs(b.residual, b.shortcut, b.gate, True)
        blocks.append(b)
    return MacTable(table.stem, tuple(blocks), table.classifier)


def metadata_mac_table(meta, num_classes=None):
    """The MacTable of an exported graph from its toolkit metadata, as `model_mac_table` counts its model: the MAC
    counts export stored (``macs``, checked by graphmeta when read), else from the backbone and the blocks' kinds
    (a dropped block costs no residual and no gate, an ungated one no gate)."""
    stored = meta.get("macs")
    if stored is not None:
        paper = stored.get("residual_always_computed") is True or meta.get("mode") == "paper"
        blocks = tuple(BlockMacs(b["residual"], b["shortcut"], b["gate"], paper and b["gate"] > 0) for b in stored["blocks"])
        return MacTable(stored["stem"], blocks, stored["classifier"])
    kinds = block_kinds(meta)
    classes = num_classes or len(meta.get("classes") or ()) or 10
    table = mac_table(meta.get("backbone", "resnet20"), meta.get("mode", "predictive"), classes,
                      [i for i, k in enumerate(kinds) if k == "dropped"], meta.get("gate_hidden", 16),
                      meta.get("image_size", 32))
    blocks = tuple(BlockMacs(b.residual, b.shortcut, 0) if i < len(kinds) and kinds[i] == "dense" else b
                   for i, b in enumerate(table.blocks))
    return MacTable(table.stem, blocks, table.classifier)


def gate_hidden_of(model):
    """The hidden units of the model's gates (16, the default, when it has none)."""
    for block in model.blocks:
        if block.gate is not None and hasattr(block.gate, "hidden"):
            return block.gate.hidden.out_features
    return 16
