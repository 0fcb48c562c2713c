"""What a config may name for the model, checked before PyTorch loads: gate modes, whole numbers, block indices."""

import operator

from cosinegate.errors import CosineGateError
from cosinegate.schema import shown

MODES = ("paper", "predictive", "none")


def whole_number(value):
    """``value`` as a Python int where it is a whole number (numpy ints, and integral floats of older configs,
    included), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return int(value) if isinstance(value, float) and value.is_integer() else None


def block_indices(field, values, backbone, count):
    """Sorted distinct block indices of ``values`` (whole numbers in 0..count-1); anything else is one line."""
    try:
        indices = [whole_number(b) for b in values]
    except TypeError:  # not a list
        indices = [None]
    if None in indices:
        raise CosineGateError(f"{field} = {shown(values)}; give a list of block indices (whole numbers, 0-based).")
    bad = [b for b in indices if not 0 <= b < count]
    if bad:
        raise CosineGateError(f"{field} {shown(bad)} out of range for {backbone} ({count} blocks, 0-based indices).")
    return sorted(set(indices))
