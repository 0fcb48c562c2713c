"""Run the bundle's engine on images: label, score, the blocks that ran, and the executed MACs.

    python3 run_engine.py IMAGE_OR_FOLDER [...]                   (the engine in results/, built by build_on_device.sh)
    python3 run_engine.py --engine results/X.engine photos/
    python3 run_engine.py --onnx model.conditional.onnx photos/   (ONNX Runtime instead of TensorRT, e.g. on a desktop;
                                                                   the bundle README names its graph)

Reads the preprocessing rule, the per-block MACs and the block kinds from the bundle's manifest.json and the class
names from labels.txt (both beside this file, or --manifest / --labels; with --onnx and no manifest, the graph's own
metadata). Each image is decoded to RGB, resized as in training (the manifest's preprocessing `resize`: "native" -- an
image of the input size as it is, any other: shorter side to round(N/0.875), center crop N x N; "eval" -- the training
data's sizes were mixed, so every image is resized and cropped, N x N ones included; "native-or-center-crop", graphs
made before the rule was stored: decided per image, as "native"), scaled to 0..1, normalized with the checkpoint's mean/std and fed as
NCHW float32. A .npy file holds uint8 images (H x W x 3, or K x H x W x 3: preprocessed as images) or float32 network
inputs (3 x N x N, or K x 3 x N x N: fed as they are). Prints per image the label, its softmax score and the blocks that
ran (the `gates` output), then the mean executed MACs of the graph that ran (a masked graph computes the blocks its
gates skip; a block the export fixed has no gate head) and the saving against the dense network.

Board side: Python 3.8+, numpy and TensorRT 8.5+ (JetPack 5.1: 8.5.2, 6.0: 8.6.2, 6.1/6.2: 10.3.0) with the CUDA
runtime library libcudart.so (JetPack's CUDA, /usr/local/cuda/lib64; called through ctypes, so no pycuda or
cuda-python is needed; CUDART=/path/libcudart.so picks another). Images need Pillow (`pip3 install pillow`, the exact
resize of training) or OpenCV (cv2, which JetPack ships: the same decoded pixels, a resize within a few levels of 255
of Pillow's). --onnx needs onnxruntime instead of TensorRT. Imports nothing from the toolkit. Exit status 2 on bad
input, with one line naming it.
"""

import argparse
import ctypes
import ctypes.util
import io
import json
import math
import os
import platform
import re
import stat
import sys
from pathlib import Path

try:
    import numpy as np
except ImportError:  # a board without numpy: one line, also for --help
    if __name__ != "__main__":
        raise
    print("error: run_engine.py needs numpy: pip3 install 'numpy<1.24' (TensorRT 8.5 on JetPack 5.1 needs np.bool; "
          "JetPack 6's TensorRT and OpenCV need numpy below 2).", file=sys.stderr)
    sys.exit(2)

HERE = Path(__file__).resolve().parent
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
MAX_PIXELS = 50000000  # as the toolkit's image reader: width x height
MAX_INPUTS = 100000
MAX_NPY_BYTES = 1 << 30  # one .npy array
MAX_JSON_BYTES = 1 << 24  # a manifest (the toolkit writes tens of kilobytes)
MAX_LABELS_BYTES = 1 << 20  # labels.txt: one class name a line (CIFAR-10's is 60 bytes)
ORT_ENGINE_FORMAT = "cosinegate-ort-engine-v1"  # cosinegate.manifests' (this file imports nothing from the toolkit)
NPY_HEADER_BYTES = 1 << 16  # room for a .npy header (numpy writes 128 bytes and refuses one over 10000)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024  # the input sides the toolkit exports (cosinegate.schema)
RESIZE_RULES = ("native-or-center-crop", "native", "eval")
MARKER = re.compile(rb"\xff([^\x00\xff])")  # a JPEG marker: FF and a code (fill FFs before it are passed over; FF 00 is
MARKER_IN_SCAN = re.compile(rb"\xff([^\x00\xff\xd0-\xd7])")  # data); in scan data restart markers belong to the scan


class BadInput(Exception):
    """One line for the user; exit status 2."""


# ---- what the bundle says -------------------------------------------------------------------------------------------


def read_json(path, what):
    try:
        info = os.stat(str(path))
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_JSON_BYTES:
            raise BadInput("{} {} is not a regular file of at most {} bytes; unpack the bundle again.".format(
                what, path, MAX_JSON_BYTES))
        with open(str(path)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise BadInput("{} {} not found; run this file from an unpacked bundle or pass --manifest.".format(what, path))
    except (OSError, ValueError, RecursionError) as exc:
        raise BadInput("{} {} is not readable JSON ({}); unpack the bundle again.".format(what, path, type(exc).__name__))


def model_info(manifest, graph_meta=None):
    """{"pre", "macs", "kinds", "classes", "form", "mode"} from a bundle or engine manifest (or a graph's cosinegate.*
    metadata)."""
    if graph_meta is not None:
        card, where = graph_meta, "the graph's metadata"
    else:
        if not isinstance(manifest, dict):
            raise BadInput("the manifest is not a JSON object; pass the bundle's manifest.json.")
        card = manifest.get("card") if isinstance(manifest.get("card"), dict) else {}
        card = dict(card, **({"preprocessing": manifest["preprocessing"]} if manifest.get("preprocessing") else {}))
        meta = manifest.get("onnx_metadata") if isinstance(manifest.get("onnx_metadata"), dict) else {}
        card = dict(meta, **card)
        where = "the manifest"
    pre = card.get("preprocessing")
    if not isinstance(pre, dict):
        raise BadInput("{} records no preprocessing rule (a bundle made before it was stored); re-create the bundle "
                       "on the desktop with this toolkit's cosinegate build-engine.".format(where))
    problem = preprocessing_problem(pre)
    if problem:
        raise BadInput("{}'s preprocessing {}; re-create the bundle on the desktop (cosinegate build-engine)."
                       .format(where, problem))
    macs = card.get("macs") if macs_usable(card.get("macs")) else None
    blocks = card.get("blocks") if isinstance(card.get("blocks"), list) else []
    kinds = [b.get("kind") if isinstance(b, dict) else None for b in blocks]
    classes = card.get("classes") if isinstance(card.get("classes"), list) else None
    form = manifest.get("form") if isinstance(manifest, dict) else None
    form = form if isinstance(form, str) else card.get("form") if isinstance(card.get("form"), str) else None
    return {"pre": pre, "macs": macs, "kinds": kinds, "classes": classes, "form": form, "mode": card.get("mode")}


def graph_kinds(info, engine=None, manifest=None, graph_meta=None):
    """``info`` with the form and block kinds of the graph that runs, which a bundle's manifest may not describe: an
    ONNX graph's own metadata, an engine's ``<engine>.json``, or for a selection candidate's engine (named
    <model>-<candidate>-...) the kinds the bundle records for that candidate."""
    meta = graph_meta
    if meta is None and engine is not None:
        side = Path("{}.json".format(engine))
        record = read_json(side, "engine manifest") if side.is_file() else {}
        meta = record.get("onnx_metadata") if isinstance(record, dict) else None
        candidates = manifest.get("candidates") if isinstance(manifest, dict) else None
        if not isinstance(meta, dict) and isinstance(candidates, dict):
            for name, cand in candidates.items():
                prefix = "{}-{}-{}-".format(manifest.get("model"), name, manifest.get("precision"))
                if Path(engine).name.startswith(prefix) and isinstance(cand, dict):
                    if not isinstance(cand.get("kinds"), list):  # a bundle made before they were recorded
                        return dict(info, note="note: the bundle records no block kinds for the {} candidate; its MACs "
                                               "are counted with the bundle graph's (re-create the bundle for "
                                               "exact ones)".format(name))
                    meta = {"form": "conditional", "blocks": [{"kind": k} for k in cand["kinds"]]}
                    break
    if not isinstance(meta, dict):
        return info
    blocks = meta.get("blocks") if isinstance(meta.get("blocks"), list) else []
    kinds = [b.get("kind") if isinstance(b, dict) else None for b in blocks]
    form = meta.get("form") if isinstance(meta.get("form"), str) else info["form"]
    return dict(info, kinds=kinds or info["kinds"], form=form)


def macs_usable(macs):
    """Whether stored MAC counts are whole numbers this script can add up (else no MACs are reported)."""
    def whole(v):
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 63

    return (isinstance(macs, dict) and all(whole(macs.get(k)) for k in ("stem", "classifier", "dense")) and macs["dense"] > 0
            and isinstance(macs.get("blocks"), list)
            and all(isinstance(b, dict) and all(whole(b.get(k)) for k in ("residual", "shortcut", "gate")) for b in macs["blocks"]))


def preprocessing_problem(pre):
    """What this script cannot apply in a preprocessing record, or None."""
    if pre.get("resize") not in RESIZE_RULES:
        return "resize {!r} is not one this run_engine.py knows ({})".format(pre.get("resize"), ", ".join(RESIZE_RULES))
    values = [pre.get(key) for key in ("crop", "mean", "std")] + [[pre.get("resize_shorter_side")]]
    if not all(isinstance(v, list) and v and all(is_number(x) for x in v) for v in values):
        return "lacks a numeric crop, resize_shorter_side, mean or std (lists of numbers, a number)"
    try:
        crop = [int(v) for v in pre["crop"]]
        side = int(pre["resize_shorter_side"])
        mean = [float(v) for v in pre["mean"]]
        std = [float(v) for v in pre["std"]]
    except (ValueError, OverflowError):  # int(nan), int(inf), float(10**400)
        return "lacks a numeric crop, resize_shorter_side, mean or std (finite numbers)"
    finite = all(math.isfinite(v) for v in mean + std)
    if len(crop) != 2 or crop[0] != crop[1] or len(mean) != 3 or len(std) != 3 or not finite or min(std) <= 0:
        return "has crop {}, mean {}, std {}: not a square crop, 3 finite means and 3 positive stds".format(
            shown(crop), shown(mean), shown(std))
    if not MIN_IMAGE_SIZE <= crop[0] <= MAX_IMAGE_SIZE or not crop[0] <= side <= 4 * MAX_IMAGE_SIZE:
        return "has crop {} and shorter side {}: not a crop of {} to {} and a side from the crop to {}".format(
            shown(crop), shown(side), MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, 4 * MAX_IMAGE_SIZE)
    if pre.get("layout") != "NCHW" or pre.get("dtype") != "float32" or pre.get("pixel_range") != [0, 255]:
        return "is not pixels 0..255 fed as NCHW float32"
    return None


def is_number(value):
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shown(value, width=60):
    """``value`` as text, cut to ``width`` characters (a hostile file's value stays a short line)."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def read_labels(path, classes):
    """Class names: labels.txt (one per line) when present, else the manifest's, else None (indices are printed)."""
    if path is not None and Path(path).is_file():
        if Path(path).stat().st_size > MAX_LABELS_BYTES:
            raise BadInput("labels file {} is over {} bytes; pass one class name per line.".format(path, MAX_LABELS_BYTES))
        try:
            names = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput("labels file {} is not readable UTF-8 text ({}); unpack the bundle again.".format(path, type(exc).__name__))
        return names
    return classes


# ---- images -> input ------------------------------------------------------------------------------------------------


def list_inputs(paths):
    """The image and .npy files named, folders listed (sorted, recursively, hidden files and all but regular files
    skipped: a FIFO would block the read for ever)."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for root, dirs, files in os.walk(str(path)):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(root) / f for f in sorted(files) if not f.startswith(".")
                          and Path(f).suffix.lower() in IMAGE_SUFFIXES + (".npy",) and (Path(root) / f).is_file()]
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES + (".npy",):
                raise BadInput("{} is not an image ({}) or a .npy file; pass images, folders of them or .npy arrays.".format(
                    name, " ".join(IMAGE_SUFFIXES)))
            found.append(path)
        elif path.exists():
            raise BadInput("{} is not a regular file (a FIFO, device, ...); pass image files, folders of images or .npy "
                           "files.".format(name))
        else:
            raise BadInput("{} not found; pass image files, folders of images or .npy files.".format(name))
    if not found:
        raise BadInput("no images or .npy files in {}; pass image files or folders of them.".format(" ".join(paths)))
    if len(found) > MAX_INPUTS:
        raise BadInput("{} files named, over {}; pass fewer at a time.".format(len(found), MAX_INPUTS))
    return found


def image_reader():
    """(name, function path -> uint8 H x W x 3 RGB, resize function), Pillow first, then OpenCV; None when neither."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        Image = None
    if Image is not None:
        bilinear = getattr(Image, "Resampling", Image).BILINEAR

        def read(path):
            with Image.open(str(path)) as image:
                if image.size[0] * image.size[1] > MAX_PIXELS:
                    raise BadInput("image {} is {} x {} pixels, over the {} pixel limit; shrink it first.".format(
                        path, image.size[0], image.size[1], MAX_PIXELS))
                image = ImageOps.exif_transpose(image)
                if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):  # as the toolkit: 16 bits -> 8 (value >> 8)
                    image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), "L")
                elif image.mode in ("I", "F"):
                    raise BadInput("image {} is a 32-bit ({}) image; save it as 8- or 16-bit.".format(path, image.mode))
                return np.asarray(image.convert("RGB"), dtype=np.uint8)

        def resize(array, width, height):
            return np.asarray(Image.fromarray(array).resize((width, height), bilinear), dtype=np.uint8)

        return "Pillow", read, resize
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_PIXELS)  # read as cv2 loads: the size is checked from the header
    try:
        import cv2
    except ImportError:
        return None

    def read_cv(path):
        array, said = quiet_imread(cv2, path)  # applies the EXIF orientation; 16 bits scaled to 8 (as Pillow's >> 8)
        if array is None and "MAX_IMAGE_PIXELS" in said:
            raise BadInput("image {} is over the {} pixel limit; shrink it first.".format(path, MAX_PIXELS))
        if array is None:
            reason = [line.strip() for line in said.splitlines() if line.strip()]
            raise BadInput("{} is not an image OpenCV can read{}; re-save it as an 8-bit PNG or JPEG, or install Pillow "
                           "(pip3 install pillow).".format(path, " (OpenCV: {})".format(reason[-1][:80]) if reason else ""))
        # libjpeg fills a cut-off JPEG with gray and only warns (once: not at all after an earlier warning)
        if "Premature end" in said or not jpeg_complete(path):
            raise BadInput("{} is truncated (a JPEG without its end); replace it with a complete file.".format(path))
        if array.shape[0] * array.shape[1] > MAX_PIXELS:
            raise BadInput("image {} is over the {} pixel limit; shrink it first.".format(path, MAX_PIXELS))
        return np.ascontiguousarray(array[:, :, ::-1])

    def resize_cv(array, width, height):
        shrink = width < array.shape[1] or height < array.shape[0]
        return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    return "OpenCV", read_cv, resize_cv


def quiet_imread(cv2, path):
    """cv2.imread(path) as (BGR array or None, what OpenCV and its decoders wrote to stderr meanwhile): they write to
    file descriptor 2 directly, so it points at a temporary file for the call (bad input stays one line); where no
    temporary file or descriptor can be had, the read is not captured."""
    import tempfile

    sys.stderr.flush()
    sink = saved = None
    try:
        sink = tempfile.TemporaryFile()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
    except OSError:  # no temporary file, or no stderr to point elsewhere: the read is not captured
        if saved is not None:
            os.close(saved)
        if sink is not None:
            sink.close()
        sink = saved = None
    raised = ""
    try:
        array = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. over OPENCV_IO_MAX_IMAGE_PIXELS: checked by an assertion that raises
        array, raised = None, str(exc)
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    said = ""
    if sink is not None:
        with sink:
            sink.seek(0)
            said = sink.read().decode("utf-8", "replace")
    return array, said + raised


def jpeg_complete(path, chunk=1 << 16):
    """False for a JPEG cut off before its end-of-image marker (FF D9), True for a whole one and for any other file.
    Walks the marker structure as a decoder does: length-prefixed segments skipped whole (an EXIF thumbnail with its
    own markers included), scan data searched for the next marker (FF 00 and restart markers belong to the scan,
    FF FF is fill). Stops at the end marker: bytes after it (a camera's trailer, any size) are never read."""
    with open(str(path), "rb") as handle:
        state = {"buf": b"", "pos": 0}

        def ahead(n):  # at least n unread bytes buffered; False at the end of the file
            while len(state["buf"]) - state["pos"] < n:
                more = handle.read(chunk)
                if not more:
                    return False
                state["buf"], state["pos"] = state["buf"][state["pos"]:] + more, 0
            return True

        def next_marker(in_scan):
            pattern = MARKER_IN_SCAN if in_scan else MARKER
            while ahead(2):
                buf = state["buf"]
                found = pattern.search(buf, state["pos"])
                if found:
                    state["pos"] = found.end()
                    return found.group(1)[0]
                state["pos"] = len(buf) - 1 if buf.endswith(b"\xff") else len(buf)  # an FF may start the next read's marker
            return None

        if not ahead(2) or state["buf"][:2] != b"\xff\xd8":
            return True
        state["pos"], in_scan = 2, False
        while True:
            marker = next_marker(in_scan)
            if marker is None:
                return False
            if marker == 0xD9:
                return True
            if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # restart, start-of-image and TEM markers stand alone
                continue
            if not ahead(2):
                return False
            length = int.from_bytes(state["buf"][state["pos"]:state["pos"] + 2], "big")
            if length < 2 or not ahead(length):
                return False
            state["pos"] += length
            in_scan = marker == 0xDA


def fit(array, pre, resize):
    """uint8 H x W x 3 -> N x N x 3 as the toolkit's cosinegate.data.resize.fit under the rule the model's data used
    (pre["resize"]): "eval": every image, N x N ones included, shorter side to S, center crop N (a folder of mixed
    sizes, decided per split on the desktop); "native", or "native-or-center-crop" of graphs made before the rule was
    stored (decided per image, as before): an N x N image as it is, any other resized as "eval"."""
    size, side = int(pre["crop"][0]), int(pre["resize_shorter_side"])
    h, w = array.shape[:2]
    if (h, w) == (size, size) and pre.get("resize") != "eval":
        return array
    if resize is None:
        raise NoReader()
    scale = side / float(min(w, h))
    new_w, new_h = max(size, int(round(w * scale))), max(size, int(round(h * scale)))
    if new_w * new_h > MAX_PIXELS:
        raise Oversize("{}x{} resized to a shorter side of {} is {}x{}, over {} pixels".format(w, h, side, new_w, new_h,
                                                                                              MAX_PIXELS))
    array = resize(array, new_w, new_h)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return array[top : top + size, left : left + size]


class NoReader(Exception):
    pass


class Oversize(Exception):
    """An image whose resized size would exceed MAX_PIXELS."""


def to_input(images, pre):
    """uint8 K x N x N x 3 -> float32 K x 3 x N x N, the float32 operations of the toolkit's to_input in its order."""
    mean = np.asarray(pre["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(1, 3, 1, 1)
    x = np.asarray(images).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def load_inputs(files, pre, reader):
    """[(name, float32 3 x N x N)] for every image (a .npy stack gives name[i])."""
    size = int(pre["crop"][0])
    read, resize = (reader[1], reader[2]) if reader else (None, None)
    out = []
    for path in files:
        if path.suffix.lower() == ".npy":
            try:
                check_npy(path)
                array = np.load(str(path), allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise BadInput("{} is not a numpy .npy array ({}); save it with numpy.save.".format(path, str(exc)[:80]))
            except MemoryError:
                raise BadInput("{} does not fit in memory; split it into smaller arrays.".format(path))
            if array.dtype == np.uint8 and array.ndim in (3, 4) and array.shape[-1] == 3:
                stack = array[None] if array.ndim == 3 else array
                try:
                    x = to_input(np.stack([fit(a, pre, resize) for a in stack]), pre)
                except NoReader:
                    raise BadInput("{} holds images of another size than {}x{}; resizing needs Pillow: pip3 install pillow "
                                   "(or OpenCV).".format(path, size, size))
                except MemoryError:
                    raise BadInput("{}'s images do not fit in memory once resized; split it into smaller arrays.".format(path))
                except Oversize as exc:
                    raise BadInput("{} holds an image of {}; crop it first.".format(path, exc))
            elif array.dtype == np.float32 and array.ndim in (3, 4) and tuple(array.shape[-3:]) == (3, size, size):
                x = array[None] if array.ndim == 3 else array
            else:
                raise BadInput("{} holds {} {}; pass uint8 images (H x W x 3 or K x H x W x 3) or float32 inputs "
                               "(3 x {n} x {n} or K x 3 x {n} x {n}).".format(path, array.dtype, list(array.shape), n=size))
            if len(x) == 0:
                raise BadInput("{} holds no images; pass a non-empty array.".format(path))
            names = [str(path)] if array.ndim == 3 else ["{}[{}]".format(path, i) for i in range(len(x))]
            out += list(zip(names, x))
            continue
        if read is None:
            raise BadInput("reading {} needs Pillow or OpenCV: pip3 install pillow (or pass .npy arrays).".format(path))
        try:
            array = fit(read(path), pre, resize)
        except BadInput:
            raise
        except MemoryError:
            raise BadInput("{} does not fit in memory once resized; shrink it first.".format(path))
        except Oversize as exc:
            raise BadInput("{} is an image of {}; crop it first.".format(path, exc))
        except Exception as exc:  # a file boundary: Pillow and OpenCV raise many types for a broken file
            raise BadInput("{} is not a readable image ({}: {}); remove or replace it.".format(
                path, type(exc).__name__, (str(exc).splitlines() or [""])[0][:80]))
        out.append((str(path), to_input(array[None], pre)[0]))
    return out


def check_npy(path):
    """Check a .npy file's header before numpy allocates its array: no more bytes declared than the file holds, at
    most MAX_NPY_BYTES, MAX_INPUTS images and MAX_PIXELS pixels an image (BadInput); ValueError where the header is
    not one numpy reads (format 1.0 or 2.0)."""
    with open(str(path), "rb") as handle:
        head = io.BytesIO(handle.read(NPY_HEADER_BYTES))
        size = os.fstat(handle.fileno()).st_size
    version = np.lib.format.read_magic(head)
    if version not in ((1, 0), (2, 0)):
        raise ValueError("format {}.{}, not 1.0 or 2.0".format(*version))
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(head)
    declared = dtype.itemsize * math.prod(shape)
    if 0 in shape:
        raise BadInput("{} holds an empty {} array; save images with pixels in them.".format(path, shown(list(shape))))
    if min(shape, default=0) < 0 or declared > min(size - head.tell(), MAX_NPY_BYTES):
        raise BadInput("{} declares a {} {} array, more than its {} bytes hold or over {}; save it again with numpy.save, "
                       "in smaller arrays.".format(path, shown(dtype), shown(list(shape)), size, MAX_NPY_BYTES))
    if len(shape) == 4 and shape[0] > MAX_INPUTS:
        raise BadInput("{} holds {} arrays, over {}; split it into smaller arrays.".format(path, shape[0], MAX_INPUTS))
    if dtype == np.uint8 and len(shape) in (3, 4) and shape[-3] * shape[-2] > MAX_PIXELS:
        raise BadInput("{} holds images of {} x {} pixels, over the {} pixel limit; shrink them first.".format(
            path, shape[-2], shape[-3], MAX_PIXELS))


# ---- runners --------------------------------------------------------------------------------------------------------


# The fields of onnx.proto that hold tensors, graphs and their containers: {message: {field number: message}}
# (tests/trt/test_run_engine.py derives the same table from onnx's own descriptors, from ModelProto outward).
ONNX_TENSOR_FIELDS = {
    "model": {7: "graph", 20: "training_info", 25: "function"},
    "training_info": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION, EXTERNAL = 13, 14, 1
MAX_GRAPH_BYTES = 2 << 30  # protobuf's own limit: a larger graph keeps its weights outside
MAX_NESTING = 100  # protobuf's default recursion limit
MAX_FIELDS = 10000000  # far above any graph the toolkit writes (weights are one raw_data field per tensor)


def varint(data, pos, end):
    """(value, next position) of the protobuf varint at ``pos``."""
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("a varint runs past its message")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def uses_external_data(data):
    """Whether a serialized ONNX model keeps any tensor (initializers, attributes, subgraphs, functions) in an
    external file: ONNX Runtime before 1.24 reads such a file wherever the graph says, outside its folder too.
    Read with the protobuf wire format alone (no onnx package on the board), depth first (the stack holds one entry
    per level of nesting); ValueError for what is no model, or nests or counts past what a graph holds."""
    stack, (kind, pos, end), fields = [], ("model", 0, len(data)), 0
    while True:
        if pos >= end:
            if pos != end:
                raise ValueError("a field runs past its message")
            if not stack:
                return False
            kind, pos, end = stack.pop()
            continue
        fields += 1
        if fields > MAX_FIELDS:
            raise ValueError("over {} fields".format(MAX_FIELDS))
        key, pos = varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos, end)
            if kind == "tensor" and field == TENSOR_DATA_LOCATION and value == EXTERNAL:
                return True
        elif wire == 2:
            size, pos = varint(data, pos, end)
            if pos + size > end:
                raise ValueError("a field runs past its message")
            if kind == "tensor" and field == TENSOR_EXTERNAL_DATA:
                return True
            child = ONNX_TENSOR_FIELDS[kind].get(field)
            if child:
                if len(stack) >= MAX_NESTING:
                    raise ValueError("nested over {} deep".format(MAX_NESTING))
                stack.append((kind, pos + size, end))
                kind, end = child, pos + size
                continue
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError("wire type {} is not one ONNX writes".format(wire))


ISA = (("avx512", ("avx512f",)), ("avx2", ("avx2",)), ("neon", ("neon", "asimd")))  # as cosinegate.runtime.ort_engine


def cpu_identity(cpuinfo="/proc/cpuinfo"):
    """{"machine", "model", "isa"} of this CPU, exactly as the toolkit's cosinegate.runtime.ort_engine.cpu_identity
    (this file imports nothing from the toolkit; tests/trt/test_run_engine.py checks the two agree)."""
    model, flags = "", set()
    try:
        with open(cpuinfo, errors="replace") as handle:
            text = handle.read(1 << 20)
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    if not model and text:  # ARM kernels name no model: the implementer and part numbers say which core
        parts = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}
        model = " ".join("{}={}".format(k, parts[k]) for k in ("cpu implementer", "cpu part") if k in parts)
    isa = sorted(name for name, keys in ISA if flags & set(keys))
    return {"machine": platform.machine(), "model": " ".join(model.split())[:200] or "unknown", "isa": isa}


def sha256_of(path, chunk=1 << 20):
    import hashlib

    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def ort_engine_problem(graph, version):
    """Why ONNX Runtime ``version`` on this CPU may not run ``graph``, where the manifest beside it (``<graph>.json``)
    says it was built for the cpu-onnxruntime target: the checks of cosinegate.runtime.ort_engine.check_ort_engine
    (hash, ONNX Runtime version, CPU machine, model and vector extensions). (is such a graph, problem or None); the
    bundle's graphs have no such manifest and run on any release."""
    path = Path("{}.json".format(graph))
    if not path.is_file():
        return False, None
    manifest = read_json(path, "graph manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != ORT_ENGINE_FORMAT:
        return False, None
    if manifest.get("engine_sha256") != sha256_of(graph):
        return True, "it does not match the hash in {} (changed since it was built)".format(path.name)
    if str(manifest.get("onnxruntime_version")) != version:
        return True, "it was optimized by ONNX Runtime {}, this is ONNX Runtime {}".format(
            shown(manifest.get("onnxruntime_version"), 40), version)
    built = manifest.get("cpu") if isinstance(manifest.get("cpu"), dict) else {}
    here = cpu_identity()
    for key in ("machine", "model", "isa"):
        if built.get(key) != here.get(key):
            return True, "it was optimized on CPU {} ({}), this CPU is {}".format(shown(built.get(key), 80), key,
                                                                               shown(here.get(key), 80))
    return True, None


class OnnxRunner:
    """The graph on ONNX Runtime's CPU provider (the same file on a desktop, and this script's test)."""

    def __init__(self, path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BadInput("--onnx needs onnxruntime: pip3 install onnxruntime.")
        if not Path(path).is_file():
            what = "is a folder" if Path(path).is_dir() else "not found"
            raise BadInput("graph {} {}; pass a model.*.onnx file of the bundle.".format(path, what))
        try:
            if Path(path).stat().st_size > MAX_GRAPH_BYTES:
                raise ValueError("over {} bytes".format(MAX_GRAPH_BYTES))
            external = uses_external_data(Path(path).read_bytes())
        except (OSError, ValueError, MemoryError) as exc:
            raise BadInput("{} is not an ONNX graph ({}); pass a model.*.onnx file of the bundle.".format(path, exc))
        if external:
            raise BadInput("{} keeps tensors in external files, which ONNX Runtime before 1.24 reads wherever the graph "
                           "points; the bundle's graphs carry their weights inside: pass a model.*.onnx file of the "
                           "bundle.".format(path))
        native, problem = ort_engine_problem(path, ort.__version__)
        if problem:
            raise BadInput("{} was built for the cpu-onnxruntime target and cannot run here: {}; pass the bundle's "
                           "model.*.onnx, or rebuild the graph on this machine with cosinegate build-engine "
                           "--target cpu-onnxruntime.".format(path, problem))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        if native:  # optimized offline for this ONNX Runtime and CPU: loaded as it is, as the toolkit's runner does
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own types for a file that is no graph
            raise BadInput("{} is not an ONNX graph ONNX Runtime loads ({}); pass a model.*.onnx file of the bundle.".format(
                path, type(exc).__name__))
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != ["input"]:
            raise BadInput("{} has inputs {}, not the toolkit's one `input`; pass a model.*.onnx file of the bundle.".format(
                path, [i.name for i in inputs]))
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if any(len(outputs.get(name) or ()) != 2 for name in ("logits", "gates")):
            raise BadInput("{} has outputs {}, not the toolkit's `logits` [N, classes] and `gates` [N, blocks]; pass a "
                           "model.*.onnx file of the bundle.".format(path, outputs))
        shape = inputs[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else 1
        self.shape = tuple(shape[1:])

    def metadata(self):
        """The graph's cosinegate.* metadata (JSON values)."""
        meta = {}
        for key, value in self.session.get_modelmeta().custom_metadata_map.items():
            if key.startswith("cosinegate."):
                try:
                    meta[key[len("cosinegate."):]] = json.loads(value)
                except (ValueError, RecursionError):  # not JSON, or nested past the parser: not the toolkit's value
                    pass
        return meta

    def run(self, x):
        logits, gates = self.session.run(["logits", "gates"], {"input": x})
        return logits, gates


class Cudart:
    """The few CUDA runtime calls the engine needs, through ctypes (no pycuda or cuda-python on the board)."""

    H2D, D2H = 1, 2

    def __init__(self):
        names = [os.environ.get("CUDART"), ctypes.util.find_library("cudart"), "libcudart.so", "libcudart.so.12",
                 "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so", "/usr/local/cuda/targets/aarch64-linux/lib/libcudart.so"]
        self.lib = None
        for name in [n for n in names if n]:
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        if self.lib is None:
            raise BadInput("the CUDA runtime libcudart.so is not found; install JetPack's CUDA (sudo apt install "
                           "nvidia-jetpack) or set CUDART=/usr/local/cuda/lib64/libcudart.so.")
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]

    def check(self, status, call):
        if status != 0:
            raise RuntimeError("{} failed: CUDA error {} ({})".format(call, status, self.lib.cudaGetErrorString(status).decode()))

    def malloc(self, nbytes):
        pointer = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(pointer), max(1, int(nbytes))), "cudaMalloc")
        return pointer.value

    def stream(self):
        handle = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return handle.value or 0

    def copy(self, dst, src, nbytes, kind, stream):
        self.check(self.lib.cudaMemcpyAsync(dst, src, int(nbytes), kind, stream), "cudaMemcpyAsync")

    def sync(self, stream):
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


def numpy_dtype(trt, dtype):
    """The numpy type of a TensorRT DataType without trt.nptype (8.5.2's maps bool to np.bool, gone in numpy 1.24)."""
    for name in ("float32", "float16", "int8", "int32", "bool"):
        if hasattr(trt, name) and dtype == getattr(trt, name):
            return np.bool_ if name == "bool" else np.dtype(name).type
    raise BadInput("the engine has an I/O tensor of TensorRT type {}; rebuild it from the bundle's graph.".format(dtype))


def engine_dla_core(engine, manifest=None):
    """The DLA core ``engine`` was built for: ``settings.dla_core`` of its ``<engine>.json`` (build_on_device.sh writes
    it), else the given bundle or engine manifest's; None for a GPU engine."""
    side = Path("{}.json".format(engine))
    record = read_json(side, "engine manifest") if side.is_file() else manifest
    if not isinstance(record, dict):
        return None
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    core = settings.get("dla_core", record.get("dla_core"))
    if core is not None and (type(core) is not int or core < 0):
        raise BadInput("{} names DLA core {!r}, not a core number; rebuild the engine with sh build_on_device.sh.".format(
            side if side.is_file() else "the manifest", core))
    return core


class TensorRTRunner:
    """The engine on TensorRT 8.5+ (JetPack 5.1, 6.x, every release a target profile names): named tensors,
    set_tensor_address, execute_async_v3 (the only API of 10.x; the binding API is deprecated from 8.5, removed in 10.0).
    ``dla_core``: the core a DLA engine was built for, set on the runtime before deserializing (as trtexec does:
    sampleEngines.cpp 8.5.2 l.113-116)."""

    def __init__(self, path, trt=None, cuda=None, dla_core=None):
        check_engine_path(path)
        if trt is None:
            try:
                import tensorrt as trt
            except ImportError:
                raise BadInput("TensorRT's Python package is missing; on JetPack: sudo apt install python3-libnvinfer "
                               "(or run with --onnx MODEL.onnx on ONNX Runtime).")
        self.trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core is not None:
            if dla_core >= runtime.num_DLA_cores:
                raise BadInput("{} runs on DLA core {} and this device has {} DLA cores; rebuild the bundle for a core "
                               "it has (or without --dla-core).".format(path, dla_core, runtime.num_DLA_cores))
            runtime.DLA_core = dla_core
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise BadInput("TensorRT {} could not load {} (built by another TensorRT version or for another GPU?); rebuild it "
                           "here with sh build_on_device.sh.".format(getattr(trt, "__version__", "?"), path))
        if not hasattr(self.engine, "num_io_tensors"):
            raise BadInput("TensorRT {} is older than 8.5, which every target profile needs; use JetPack 5.1 or later.".format(
                getattr(trt, "__version__", "?")))
        self.context = self.engine.create_execution_context()
        self.tensors = {}  # name -> (shape, dtype); the toolkit's graphs: input `input`, outputs logits, gates
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self.tensors[name] = (tuple(self.engine.get_tensor_shape(name)), numpy_dtype(trt, self.engine.get_tensor_dtype(name)))
        if sorted(self.tensors) != ["gates", "input", "logits"]:
            raise BadInput("{} has tensors {}, not the toolkit's input, logits and gates; build it from the bundle's graph.".format(
                path, sorted(self.tensors)))
        if any(d < 0 for shape, _ in self.tensors.values() for d in shape):
            raise BadInput("{} has a dynamic shape; build it from the bundle's graph (fixed batch).".format(path))
        self.batch, self.shape = self.tensors["input"][0][0], self.tensors["input"][0][1:]
        self.cuda = cuda or Cudart()
        self.stream = self.cuda.stream()
        self.device = {name: self.cuda.malloc(np.prod(shape) * np.dtype(dtype).itemsize)
                       for name, (shape, dtype) in self.tensors.items()}
        for name, pointer in self.device.items():
            self.context.set_tensor_address(name, pointer)

    def run(self, x):
        x = np.ascontiguousarray(x, dtype=self.tensors["input"][1])
        self.cuda.copy(self.device["input"], x.ctypes.data, x.nbytes, Cudart.H2D, self.stream)
        ok = self.context.execute_async_v3(self.stream)
        if ok is False:
            raise RuntimeError("TensorRT could not run the engine (see its log above)")
        out = []
        for name in ("logits", "gates"):
            shape, dtype = self.tensors[name]
            host = np.empty(shape, dtype)
            self.cuda.copy(host.ctypes.data, self.device[name], host.nbytes, Cudart.D2H, self.stream)
            out.append(host)
        self.cuda.sync(self.stream)
        return out[0], out[1]


def find_engine(results=None, form=None):
    """The engine build_on_device.sh made: the one *.engine in results/; among several, the candidate results/winner.txt
    names, else the bundle's own form's (``form``, the manifest's)."""
    results = Path(results) if results else HERE / "results"
    engines = sorted(results.glob("*.engine"))
    if len(engines) > 1:
        winner = None
        if (results / "winner.txt").is_file():  # a regular file (a FIFO would block the read)
            try:
                with open(str(results / "winner.txt"), "rb") as handle:  # build_on_device.sh's: a few lines
                    words = handle.read(4096).decode("utf-8", "replace").split("winner:", 1)[-1].split()
                winner = words[0] if words else None
            except OSError:
                pass
        for name in (winner, form):
            chosen = [e for e in engines if name and "-{}-".format(name) in e.name]
            if len(chosen) == 1:
                return chosen[0]
    if len(engines) != 1:
        what = "no engine" if not engines else "{} engines ({})".format(len(engines), ", ".join(e.name for e in engines))
        raise BadInput("{} in {}; build one with sh build_on_device.sh, or name it with --engine, or pass --onnx MODEL.onnx.".format(
            what, results))
    return engines[0]


# ---- run, report ----------------------------------------------------------------------------------------------------


def executed_macs(info, ran, form):
    """MACs of one image from its gate decisions in a graph of ``form`` (the toolkit's graph_mac_table): None without
    MAC counts. A block the export fixed (always run or skipped) has no gate head; a gated block of a masked graph
    computes F(x) whatever its gate says, as does a paper-mode one (its CIR needs F(x))."""
    macs, kinds = info["macs"], info["kinds"]
    if not macs or len(macs["blocks"]) != len(ran):
        return None
    paper = macs.get("residual_always_computed") is True or info["mode"] == "paper"
    every = form in ("masked", "flat")
    total = macs["stem"] + macs["classifier"]
    for i, (block, r) in enumerate(zip(macs["blocks"], ran)):
        kind = kinds[i] if i < len(kinds) else None
        fixed = kind in ("always_run", "always_skipped")
        total += block["shortcut"] + (0 if fixed else block["gate"])
        computed = not fixed and ((paper and block["gate"] > 0) or (every and kind in ("gated", "dynamic")))
        if r or computed:
            total += block["residual"]
    return total


def run_all(runner, items, info, labels):
    """Per image: {"file", "index", "label", "score", "gates", "ran", "macs"}."""
    expected = (3, int(info["pre"]["crop"][0]), int(info["pre"]["crop"][1]))
    if tuple(runner.shape) != expected:
        raise BadInput("the model takes {} inputs, the preprocessing rule makes {}; pass the bundle's own manifest.".format(
            list(runner.shape), list(expected)))
    rows, batch = [], int(runner.batch)
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        x = np.zeros((batch,) + expected, np.float32)
        x[: len(chunk)] = np.stack([a for _, a in chunk])
        logits, gates = runner.run(x)
        logits, gates = np.asarray(logits, np.float64), np.asarray(gates)
        if logits.ndim != 2 or gates.ndim != 2 or min(len(logits), len(gates)) < len(chunk) or not logits.shape[1]:
            raise BadInput("the model returned logits {} and gates {} for a batch of {}, not [N, classes] and [N, blocks]; "
                           "pass the bundle's own graph or engine.".format(logits.shape, gates.shape, batch))
        for i, (name, _) in enumerate(chunk):
            z = logits[i] - logits[i].max()
            probs = np.exp(z) / np.exp(z).sum()
            index = int(np.argmax(logits[i]))
            ran = [bool(g > 0.5) for g in gates[i]]
            label = labels[index] if labels and index < len(labels) else str(index)
            rows.append({"file": name, "index": index, "label": label, "score": float(probs[index]),
                         "gates": [int(r) for r in ran], "macs": executed_macs(info, ran, info["form"]),
                         "decided_macs": executed_macs(info, ran, "conditional")})
    return rows


def mega(value):
    return "{:.2f}M".format(value / 1e6) if value < 1e9 else "{:.3f}G".format(value / 1e9)


def lines(rows, info):
    out = []
    width = max(len(r["file"]) for r in rows)
    computes_all = info["form"] in ("masked", "flat")  # its gates decide, but every gated block is computed
    for r in rows:
        skipped = [str(b) for b, g in enumerate(r["gates"]) if not g]
        blocks = "{} {}/{} blocks{}".format("gates on for" if computes_all else "ran", sum(r["gates"]), len(r["gates"]),
                                            " ({} {})".format("off:" if computes_all else "skipped", ",".join(skipped))
                                            if skipped else "")
        cost = "  {} MACs".format(mega(r["macs"])) if r["macs"] is not None else ""
        out.append("{:<{w}}  {}  {:.3f}  {}{}".format(r["file"], r["label"], r["score"], blocks, cost, w=width))
    macs = [r["macs"] for r in rows if r["macs"] is not None]
    if macs and info["macs"]:
        mean, dense = float(np.mean(macs)), info["macs"]["dense"]
        decided = float(np.mean([r["decided_macs"] for r in rows]))
        out.append("{} images: mean executed MACs {} of {} dense ({:.1f}% saved)".format(
            len(rows), mega(mean), mega(dense), 100.0 * (1.0 - mean / dense)))
        if decided != mean:  # a masked graph computes the blocks its gates skip
            out.append("this {} graph computes every gated block; its gates' decisions would execute {} ({:.1f}% saved) "
                       "in the conditional or compact form".format(info["form"], mega(decided), 100.0 * (1.0 - decided / dense)))
    else:
        out.append("{} images (no MAC counts recorded: re-create the bundle with this toolkit to get them)".format(len(rows)))
    return out


def write_report(path, rows, info):
    macs = [r["macs"] for r in rows if r["macs"] is not None]
    report = {"images": rows, "form": info["form"], "mean_executed_macs": float(np.mean(macs)) if macs else None,
              "mean_decided_macs": float(np.mean([r["decided_macs"] for r in rows])) if macs else None,
              "dense_macs": info["macs"]["dense"] if info["macs"] else None}
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):  # replaced, never written through
        raise BadInput("--json {} is a link or not a regular file; name a new file or a plain one.".format(path))
    tmp, handle = Path("{}.tmp{}".format(path, os.getpid())), None
    try:
        handle = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(handle, "w") as out:
            out.write(json.dumps(report, indent=1) + "\n")
        os.replace(str(tmp), str(path))
    except OSError as exc:
        if handle is not None and tmp.exists():  # ours: made above, not renamed
            tmp.unlink()
        raise BadInput("cannot write {} ({}); pass --json into a writable folder.".format(path, exc.strerror or exc))


def printable(text):
    """``text`` with control characters escaped: a file name or a library's message stays on its one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def check_engine_path(path):
    """The engine file to run, refused in one line when it is missing or an ONNX graph."""
    if Path(path).suffix.lower() == ".onnx":
        raise BadInput("{} is an ONNX graph, not a TensorRT engine; run it with --onnx {} (ONNX Runtime), or build the "
                       "engine with sh build_on_device.sh.".format(path, path))
    if not Path(path).is_file():
        raise BadInput("engine {} not found; build it with sh build_on_device.sh (results/*.engine) or pass --engine.".format(path))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files, folders of images (listed recursively) or .npy files")
    parser.add_argument("--engine", help="the TensorRT engine (default: the one *.engine in results/ beside this file, or "
                                         "the candidate results/winner.txt names)")
    parser.add_argument("--onnx", help="run this ONNX graph on ONNX Runtime instead of an engine")
    parser.add_argument("--manifest", help="bundle or engine manifest with the preprocessing rule (default: manifest.json "
                                           "beside this file; with --onnx and none there, the graph's metadata)")
    parser.add_argument("--labels", help="class names, one per line (default: labels.txt beside this file)")
    parser.add_argument("--json", metavar="REPORT", help="also write the per-image results as JSON here")
    args = parser.parse_args(argv)
    try:
        manifest_path = Path(args.manifest) if args.manifest else HERE / "manifest.json"
        manifest = None
        if args.onnx:
            runner = OnnxRunner(args.onnx)
            if args.manifest or manifest_path.is_file():
                manifest = read_json(manifest_path, "manifest")
                info = graph_kinds(model_info(manifest), graph_meta=runner.metadata())
            else:
                info = model_info(None, runner.metadata())
        else:
            manifest = read_json(manifest_path, "manifest")
            info = model_info(manifest)
        if args.labels and not Path(args.labels).is_file():
            raise BadInput("labels file {} not found; pass a text file with one class name per line.".format(args.labels))
        labels = read_labels(Path(args.labels) if args.labels else HERE / "labels.txt", info["classes"])
        engine = None if args.onnx else check_engine_path(args.engine or find_engine(form=info["form"]))  # before the images
        files = list_inputs(args.inputs)
        reader = image_reader()
        items = load_inputs(files, info["pre"], reader)
        if reader and reader[0] == "OpenCV":
            print("note: images decoded and resized with OpenCV, whose resize differs slightly from training's Pillow; "
                  "pip3 install pillow for the exact pixels.")
        if not args.onnx:
            # the bundle's core applies to the engines its script built, not to one named by --engine without its .json
            runner = TensorRTRunner(engine, dla_core=engine_dla_core(engine, None if args.engine else manifest))
            info = graph_kinds(info, engine, manifest)
            if info.get("note"):
                print(info["note"])
        rows = run_all(runner, items, info, labels)
        print("\n".join(printable(line) for line in lines(rows, info)))
        if args.json:
            write_report(args.json, rows, info)
    except BadInput as exc:
        print("error: {}".format(printable(exc)), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
