"""Small value checks shared by the readers of files from outside (checkpoints, graph metadata, manifests).

Each ``*_problem`` function returns what is wrong as a short phrase naming the field, the value and
what is allowed, or None; the reader turns it into one CosineGateError line that names the file.
Nothing here imports torch or onnx, so the board's readers use it too.
"""

import math
import reprlib

MAX_DEPTH = 64  # nesting of JSON a manifest or metadata may hold
MIN_IMAGE_SIZE = 8  # input side a model, checkpoint or graph may have
MAX_IMAGE_SIZE = 1024  # a 1024 x 1024 batch already fills a desktop GPU; more is a typo or a crafted file
MAX_GATE_HIDDEN = 4096  # a gate's hidden units, as config.RANGES (a checkpoint's or graph's values are not read through it)


_SHORT = reprlib.Repr()  # bounded: a value nested 100,000 deep or an int of 5,000 digits is shown in a few characters
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple, _SHORT.maxlong = 4, 10, 10, 10, 40
_SHORT.maxstring = _SHORT.maxother = 200  # then cut to the width asked for


def shown(value, width=60):
    """A value for a message: its repr (bounded in depth, length and digits), cut to `width` characters, control
    characters escaped by repr."""
    try:
        text = _SHORT.repr(value)
    except (ValueError, RecursionError):  # an int over Python's digit limit; an object whose repr recurses
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


def whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def number(value):
    """A finite int or float (an int too large for a float is none)."""
    try:
        return (whole(value) or isinstance(value, float)) and math.isfinite(value)
    except OverflowError:
        return False


def int_problem(field, value, low, high=None):
    """`field` must be a whole number in [low, high]."""
    if not whole(value) or value < low or (high is not None and value > high):
        return f"{field} = {shown(value)} is not a whole number in {low}..{'' if high is None else high}"
    return None


def fraction_list_problem(field, values, length=None):
    """`field` must be None or a list of finite numbers in [0, 1] (of `length` entries when given)."""
    if values is None:
        return None
    if not isinstance(values, list) or not all(number(v) and 0.0 <= v <= 1.0 for v in values):
        return f"{field} = {shown(values)} is not a list of numbers in [0, 1]"
    if length is not None and len(values) != length:
        return f"{field} has {len(values)} entries, not {length}"
    return None


def is_sha256(value):
    """Whether ``value`` (read from a file) is a SHA-256 as this toolkit writes it: 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")


def depth(value, limit=MAX_DEPTH):
    """Nesting depth of lists, tuples and dicts in `value`, counted iteratively (stops past `limit`)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
