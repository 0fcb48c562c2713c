"""Checkpoints: atomic save, safe validated load, model reconstruction.

A checkpoint holds only tensors, numbers, strings, None, lists and dicts, so it is
read with `torch.load(weights_only=True)`: a file from someone else can hold data,
never code. RNG states are stored in that form too (`capture_rng`/`restore_rng`).
"""

import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from cosinegate.artifacts import atomic_path, check_checkpoint_file
from cosinegate.data import SOURCES
from cosinegate.data.normalization import of_checkpoint
from cosinegate.data.resize import image_size_of, refuse_other_size
from cosinegate.errors import CosineGateError
from cosinegate.models import build_model
from cosinegate.schema import MAX_DEPTH, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, depth, fraction_list_problem, int_problem, shown

FORMAT = "cosinegate-checkpoint-v2"
OLD_FORMATS = ("cosinegate-checkpoint-v1",)  # v1 kept numpy's RNG state and scalars as numpy objects
PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _numpy_data_globals():
    """{pickled name: object} of numpy's data-only globals that v1 files use.

    An ndarray, dtype or scalar is data: what it holds is unpickled by the same restricted
    unpickler, so allowing these lets no other object be built.
    """
    import numpy._core.multiarray as multiarray

    found = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray}
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # written by numpy 2 / numpy 1
        found[f"{module}._reconstruct"] = multiarray._reconstruct
        found[f"{module}.scalar"] = multiarray.scalar
    for code in ("u1", "u4", "i4", "i8", "f4", "f8", "b1"):
        kind = type(np.dtype(code))
        found[f"numpy.dtypes.{kind.__name__}"] = kind
    return found




def _check_plain(value, where="state"):
    """Refuse (TypeError: a bug, not a user error) anything a weights_only load could not read back."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint {where} has a {type(key).__name__} key")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, PLAIN) or type(value).__module__ == "numpy":
        raise TypeError(f"checkpoint {where} is a {type(value).__module__}.{type(value).__name__}; store plain data")


def save_checkpoint(path, **state):
    """Write a checkpoint through a temporary renamed in on success: a full disk leaves the old file and one error line."""
    state = {"format": FORMAT, **state}
    _check_plain(state)
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # torch's zip writer reports a failed write (ENOSPC, EIO) as a RuntimeError
            if "writ" not in str(exc).lower():
                raise
            raise CosineGateError(f"cannot write checkpoint {path} ({' '.join(str(exc).split())[:120]}); the disk is full "
                                  "or failing: free space or choose another --out.") from None


def capture_rng():
    """torch, numpy and Python RNG states as tensors, numbers and lists."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(rng):
    """Inverse of capture_rng."""
    torch.set_rng_state(rng["torch"])
    numpy_state, python_state = rng["numpy"], rng["python"]
    key = np.asarray(numpy_state["key"].numpy(), dtype=np.uint32)
    np.random.set_state((numpy_state["kind"], key, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss_next"]))


def _plain(value):
    """A v1 value in v2 form: numpy arrays become tensors, numpy scalars Python numbers, tuples lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint32 else value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _upgrade(state):
    """A v1 checkpoint dict in v2 form (its RNG states as capture_rng writes them)."""
    rng = state.get("rng")
    state = _plain(state)
    if rng is not None:
        kind, key, pos, has_gauss, cached = rng["numpy"]
        version, internal, gauss_next = rng["python"]
        state["rng"] = {
            "torch": rng["torch"],
            "numpy": {"kind": kind, "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        }
    state["format"] = FORMAT
    return state


LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # torch.save's pre-zip format opens with this pickle


def _corrupt(path, exc):
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_TORCH_MAGIC))
    except OSError:
        head = b""
    if head[:1] == b"\x80" and not head.startswith(LEGACY_TORCH_MAGIC):  # a pickle (protocol 2+), not torch's zip or old format
        return CosineGateError(f"checkpoint {path} is a plain pickle, not a torch.save file; pass a file written by "
                               "cosinegate train.")
    if head.lstrip()[:1] in (b"{", b"[") or Path(path).suffix in (".json", ".yaml", ".yml", ".txt", ".log", ".md"):
        return CosineGateError(f"checkpoint {path} is not a torch.save file (a text or JSON file?); pass a run's best.pt "
                               "or last.pt written by cosinegate train.")
    return CosineGateError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); retrain or restore it.")


def _torch_load(path):
    """torch.load(weights_only=True) without torch's own warnings about foreign pickles (the refusal says what is wrong)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
        return torch.load(path, map_location="cpu", weights_only=True)


def _compressed_members(path):
    """Names of the compressed members of a zip-format torch file (torch.save stores every member as it is, so a
    compressed one can only be a crafted file, whose inflated size the file's own size does not bound)."""
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            return [m.filename for m in archive.infolist() if m.compress_type != zipfile.ZIP_STORED]
    except (zipfile.BadZipFile, OSError, ValueError):
        return []  # torch.load says what is wrong


def _safe_load(path):
    """torch.load(weights_only=True); a file that needs more than numpy's data globals is refused unread, and so is
    one with compressed members (a few MB could inflate to GBs)."""
    compressed = _compressed_members(path)
    if compressed:
        raise CosineGateError(f"checkpoint {path} has compressed members ({shown(compressed[0])}), which torch.save never "
                              "writes; refused unread. Pass a file written by cosinegate train.")
    try:
        return _torch_load(path)
    except Exception as exc:  # UnpicklingError for a refused global, many types for corrupt files
        first = exc
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))  # scans opcodes, runs nothing
    except Exception:
        needed = set()
    if not needed:
        raise _corrupt(path, first) from first
    numpy_data = _numpy_data_globals()
    foreign = sorted(needed - set(numpy_data))
    if foreign:
        raise CosineGateError(
            f"checkpoint {path} holds pickled Python objects ({', '.join(foreign[:3])}) that could run code when loaded, "
            "so it was refused unread; use a checkpoint written by cosinegate train (it holds tensors, numbers, strings, "
            "lists and dicts only) and never load this file with weights_only=False unless you trust who made it."
        )
    try:
        dtype_kinds = [kind for name, kind in numpy_data.items() if name.startswith("numpy.dtypes.")]  # set by BUILD
        with torch.serialization.safe_globals([(numpy_data[name], name) for name in needed] + dtype_kinds):
            return _torch_load(path)
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def load_tensor_file(path):
    """Any torch file read as safely as a checkpoint (weights_only, nothing runs): a checkpoint or a foreign state dict."""
    path = Path(path)
    if not path.is_file():
        raise CosineGateError(f"{path} not found; check the path.")
    return _safe_load(path)


def load_checkpoint(path):
    """Load a checkpoint dict safely; missing, corrupt, code-carrying or foreign files are a CosineGateError.

    Files of the older v1 format are read (their numpy RNG state is data only) and returned in v2 form.
    """
    path = Path(path)
    check_checkpoint_file(path)
    state = _safe_load(path)
    if depth(state) > MAX_DEPTH:  # before anything walks it recursively
        raise CosineGateError(f"checkpoint {path} holds values nested over {MAX_DEPTH} deep, which cosinegate train never "
                              "writes; pass a file written by cosinegate train.")
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, *OLD_FORMATS):
        raise CosineGateError(f"{path} is not a CosineGate checkpoint (no '{FORMAT}' marker); pass a file written by cosinegate train.")
    if state["format"] != FORMAT:
        try:
            state = _upgrade(state)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CosineGateError(f"checkpoint {path} (v1) has an unreadable RNG state ({type(exc).__name__}); "
                                  "pass an unmodified file written by cosinegate train.") from None
    problem = state_problem(state)
    if problem:
        raise CosineGateError(f"checkpoint {path}: {problem}; pass an unmodified file written by cosinegate train.")
    return state


def state_problem(state):
    """What is wrong with the fields a checkpoint holds (None when nothing is); a field left out is not checked here
    (the stage that needs it says so)."""
    checks = (_config_problem, _weights_problem, _rng_problem, _optimizer_problem)
    num_classes = state.get("num_classes")
    problem = None if num_classes is None else int_problem("num_classes", num_classes, 1, 100_000)
    classes = state.get("classes")
    if not problem and classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
                                                or (num_classes is not None and len(classes) != num_classes)):
        problem = f"classes = {shown(classes)} is not a list of {num_classes} class names"
    if not problem and "epoch" in state:
        problem = int_problem("epoch", state["epoch"], 0, 10**6)
    problem = problem or fraction_list_problem("skip_rates", state.get("skip_rates"))
    for check in checks:
        problem = problem or check(state)
    return problem


def _config_problem(state):
    config = state.get("config")
    if config is None:
        return None
    if not isinstance(config, dict):
        return f"config = {shown(config)} is not a mapping"
    for section in ("model", "data"):
        if section in config and not isinstance(config[section], dict):
            return f"config.{section} = {shown(config[section])} is not a mapping"
    data, model = config.get("data", {}), config.get("model", {})
    if "source" in data and data["source"] not in SOURCES:
        return f"config.data.source = {shown(data['source'])} is not one of {', '.join(SOURCES)}"
    if data.get("root") is not None and not isinstance(data["root"], str):
        return f"config.data.root = {shown(data['root'])} is not a folder path"
    if data.get("image_size") is not None:
        problem = int_problem("config.data.image_size", data["image_size"], MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if problem:
            return problem
    for key in ("backbone", "mode"):
        if key in model and not isinstance(model[key], str):
            return f"config.model.{key} = {shown(model[key])} is not a name"
    return None


def _weights_problem(state):
    weights = state.get("model")
    return None if weights is None else weights_problem(weights)


def weights_problem(weights, what="model"):
    """What is wrong with a state dict from a file (None when nothing is): it must map weight names to dense real
    tensors in memory, each with data of its own."""
    if not isinstance(weights, dict):
        return f"{what} is not a mapping of weight names to tensors"
    for name, tensor in weights.items():
        if not isinstance(name, str):
            return f"{what} has the key {shown(name, 40)}, not a weight name"
        if not isinstance(tensor, torch.Tensor):
            return f"{what}[{name!r}] is a {type(tensor).__name__}, not a tensor"
        if tensor.layout != torch.strided or tensor.is_quantized:
            return f"{what}[{name!r}] is a {tensor.layout} tensor, not a dense one"
        if tensor.device.type != "cpu" or tensor.is_complex():
            return f"{what}[{name!r}] is a {tensor.dtype} tensor on {tensor.device.type}, not a real one in memory"
        if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():  # e.g. zeros(1).expand(2**40)
            return (f"{what}[{name!r}] is a view of {tuple(tensor.shape)} over {tensor.untyped_storage().nbytes()} bytes "
                    "of data, not a tensor of its own")
    return None


def _rng_problem(state):
    rng = state.get("rng")
    if rng is None:
        return None
    if not isinstance(rng, dict):
        return "rng is not the torch, numpy and Python RNG states cosinegate train stores"
    try:
        numpy_state, python_state = rng["numpy"], rng["python"]
        ok = (isinstance(rng, dict) and isinstance(numpy_state, dict) and isinstance(python_state, dict)
              and isinstance(rng["torch"], torch.Tensor) and rng["torch"].dtype == torch.uint8
              and isinstance(numpy_state["key"], torch.Tensor) and tuple(numpy_state["key"].shape) == (624,)
              and isinstance(numpy_state["kind"], str) and isinstance(numpy_state["pos"], int)
              and isinstance(python_state["state"], list) and len(python_state["state"]) == 625
              and all(isinstance(v, int) for v in python_state["state"]))
    except (KeyError, TypeError):
        ok = False
    return None if ok else "rng is not the torch, numpy and Python RNG states cosinegate train stores"


def _optimizer_problem(state):
    optimizer = state.get("optimizer")
    if optimizer is None:
        return None
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list) and optimizer["param_groups"]
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in optimizer["param_groups"])):
        return "optimizer is not an optimizer state (state and param_groups)"
    return None


def load_error_gist(exc):
    """A failed load_state_dict's message in one line: its first two lines, at most 240 characters."""
    return " ".join(line.strip() for line in str(exc).splitlines()[:2])[:240] or type(exc).__name__


def check_image_size(requested, state, path):
    """The checkpoint's image size; a different `requested` size (e.g. --image-size) is a CosineGateError."""
    return refuse_other_size(requested, image_size_of(state), f"checkpoint {path}")


def model_from_checkpoint(path, backbone=None, image_size=None):
    """Rebuild the model in eval mode, at the checkpoint's image size and with its normalization.

    `backbone` and `image_size`, if given, must match the checkpoint.
    """
    state = load_checkpoint(path)
    config = state.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or not isinstance(state.get("model"), dict):
        raise CosineGateError(f"checkpoint {path} has no model config or weights; pass a file written by cosinegate train.")
    if backbone is not None and backbone != config["model"].get("backbone"):
        raise CosineGateError(
            f"checkpoint {path} holds a {config['model'].get('backbone')} but --backbone {backbone} was asked for; "
            "drop --backbone or pass a matching checkpoint."
        )
    bad = [name for name, tensor in state["model"].items()
           if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CosineGateError(f"checkpoint {path} has NaN or infinite weights ({', '.join(bad[:3])}); "
                              "the run diverged: resume an earlier checkpoint with a lower learning rate.")
    size = check_image_size(image_size, state, path)
    try:
        model = build_model(config["model"], num_classes=state["num_classes"], image_size=size)
        model.load_state_dict(state["model"])
    except CosineGateError as exc:  # a model config value out of range (the model's own checks)
        raise CosineGateError(f"checkpoint {path}: its model config: {exc}".rstrip(".") + "; pass an unmodified file "
                              "written by cosinegate train.") from exc
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CosineGateError(f"checkpoint {path} does not match the model its config describes ({load_error_gist(exc)}); "
                              "pass an unmodified file written by cosinegate train.") from exc
    model.normalization = of_checkpoint(state, f"checkpoint {path}")
    model.eval()
    return model, state
