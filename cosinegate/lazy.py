"""Optional modules imported on first use, as Polygraphy's ``mod.lazy_import``.

``lazy_import("onnxruntime", "deploy")`` returns a stand-in that imports the module when one of its
attributes is first read; when the module is missing, that read raises a one-line CosineGateError naming the
extra that provides it (``pip install onnxruntime (or '.[deploy]' in the toolkit's checkout)``; install_line).
``require`` imports at once. The extras are
setup.cfg's: deploy (desktop export and parity), device (the board, no torch), trt (TensorRT and pycuda),
training (torch).
"""

import importlib

from cosinegate.errors import CosineGateError

EXTRAS = ("deploy", "device", "trt", "training")
# what pip installs a module by, where it is not the module's name (torch: the CPU build; PyPI's pulls CUDA)
PIP_ARGS = {"PIL": "pillow", "yaml": "pyyaml", "onnx_graphsurgeon": "onnx-graphsurgeon",
            "torch": "torch --index-url https://download.pytorch.org/whl/cpu"}
# modules the device extra installs, pinned there for JetPack (numpy < 1.24 for TensorRT 8.5's np.bool, < 2 on
# 3.10): a bare `pip install onnx` on a board could pull numpy 2, so for these the extra is the install line
DEVICE_MODULES = ("numpy", "onnx", "polygraphy", "tomli")


def install_line(extra, module=None):
    """How to get ``module`` of setup.cfg's ``extra`` (one, or several that each provide it): its own pip line,
    which works however the toolkit was installed, beside the checkout's extra; the extra alone for what a board
    needs pinned; for TensorRT and pycuda, where they come from on a Jetson."""
    if module == "tensorrt":
        return "TensorRT comes with JetPack on a Jetson (elsewhere from NVIDIA: pip install tensorrt)"
    if module == "pycuda":
        return "pip3 install pycuda"
    extras = (extra,) if isinstance(extra, str) else tuple(extra)
    checkout = " or ".join(f"'.[{e}]'" for e in extras)
    if module is None:
        return f"pip install {checkout} in the toolkit's checkout"
    if module in DEVICE_MODULES:
        board = "" if "device" in extras else "; on a Jetson '.[device]'"
        return f"pip install {checkout} in the toolkit's checkout{board} (its numpy pins suit JetPack's TensorRT)"
    if module == "torch":  # the training extra would pull PyPI's CUDA build
        return (f"pip install {PIP_ARGS[module]} (the CPU build; with a GPU, PyTorch's CUDA build), then {checkout} in "
                "the toolkit's checkout")
    return f"pip install {PIP_ARGS.get(module, module)} (or {checkout} in the toolkit's checkout)"


def require(name, extra, purpose=None):
    """Import module ``name`` now, or raise a CosineGateError naming ``extra`` (one of EXTRAS, or several)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise CosineGateError(missing_message(name, extra, purpose)) from exc


def missing_message(name, extra, purpose=None):
    """One line: what needs the module, and the install line of the extra that provides it."""
    extras = (extra,) if isinstance(extra, str) else tuple(extra)
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown extra {unknown[0]!r}; setup.cfg has {', '.join(EXTRAS)}")
    root = name.split(".")[0]
    installs = install_line(extras, root)
    return f"{purpose or 'this'} needs the Python module {root!r}, which is not importable here; {installs}."


class LazyModule:
    """A module imported when one of its attributes is first read (``require``'s error if it is missing)."""

    def __init__(self, name, extra, purpose=None):
        self._name, self._extra, self._purpose = name, extra, purpose

    def __getattr__(self, attr):
        if attr in ("_name", "_extra", "_purpose"):  # not set yet (copy, pickle)
            raise AttributeError(attr)
        return getattr(require(self._name, self._extra, self._purpose), attr)

    def __repr__(self):
        return f"<lazy module {self._name!r} (extra {self._extra})>"


def lazy_import(name, extra, purpose=None):
    """A LazyModule of ``name``; ``extra`` names the setup.cfg extra that installs it."""
    return LazyModule(name, extra, purpose)
