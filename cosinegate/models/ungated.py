"""Which blocks of a backbone keep no gate (always run), e.g. the first block of every stage (ConvNet-AIG)."""

from cosinegate.errors import CosineGateError
from cosinegate.models.backbones import backbone_spec
from cosinegate.schema import shown


def stage_first_blocks(spec):
    """Indices of the first block of each stage: block 0 and every block that changes the shape."""
    return [b.index for b in spec.blocks if b.index == 0 or b.changes_shape]


def resolve_ungated(backbone, value):
    """`model.ungated_blocks` ([] / list of 0-based indices / "stage_first") -> sorted list of indices."""
    spec = backbone_spec(backbone)
    if value in (None, "", []):
        return []
    if value == "stage_first":
        return stage_first_blocks(spec)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CosineGateError(f"model.ungated_blocks = {shown(value)}; give 0-based block indices, e.g. [0, 3, 6], or \"stage_first\".")
    bad = [v for v in value if not 0 <= v < len(spec.blocks)]
    if bad:
        raise CosineGateError(f"model.ungated_blocks {shown(bad)} out of range for {backbone} ({len(spec.blocks)} blocks, 0-based indices).")
    return sorted(set(value))
