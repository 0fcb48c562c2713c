"""Parity of a device run against the bundle's PyTorch reference, without PyTorch (the bundle's check_parity.py).

    polygraphy run MODEL --trt [--fp16|--int8] --data-loader-script check_parity.py --save-outputs outputs.json
    python3 check_parity.py outputs.json

The reference images travel once, as uint8 (inputs.npz: NHWC images, the model's mean/std and batch); this file is
also Polygraphy's data loader (``load_data``), which makes the float feeds with ``float_feeds``: the same numpy
function the desktop fed PyTorch and ONNX Runtime when it made reference.json, so the inputs match bit for bit.

reference.json and parity_profile.json are read from beside this file (or --reference/--profile).
The profile is the precision's: logits within atol/rtol per element (no bound where null), top-1
agreement and gate-decision agreement at least their minimums (1.0 = exact); a profile looser than
its precision's own (PROFILES) is refused. Prints top-1 agreement, gate agreement, the blocks whose
decisions differ and the largest logit error; exit status 0 when parity holds, 1 when it fails, 2
(with one line) when a file is not what it should be. Needs numpy and Polygraphy only (Python 3.8+).
"""

import argparse
import base64
import io
import json
import math
import os
import stat
import sys
import zipfile
import zlib
from pathlib import Path

try:
    import numpy as np
except ImportError:  # a board without numpy: one line and exit status 2 (1 means a failed check), also for --help
    if __name__ != "__main__":
        raise
    print("error: check_parity.py needs numpy and Polygraphy: pip3 install 'numpy<1.24' polygraphy (TensorRT 8.5 on "
          "JetPack 5.1 needs np.bool; JetPack 6's TensorRT and OpenCV need numpy below 2).", file=sys.stderr)
    sys.exit(2)

HERE = Path(__file__).resolve().parent
INPUTS = "inputs.npz"  # the reference images beside this file
INPUT = "input"  # the graph's input name
# the toolkit's parity profiles (cosinegate.parity.PROFILES, as parity_profile.json writes them; None: no bound): this
# file travels alone, so they are written out here; a bundle's profile may be stricter, never looser
PROFILES = {
    "fp32": {"profile": "fp32", "logits_atol": 1e-4, "logits_rtol": 1e-3, "min_top1_agreement": 1.0, "min_gate_agreement": 1.0},
    "fp16": {"profile": "fp16", "logits_atol": 5e-2, "logits_rtol": 5e-2, "min_top1_agreement": 0.99, "min_gate_agreement": 0.995},
    "int8": {"profile": "int8", "logits_atol": None, "logits_rtol": None, "min_top1_agreement": 0.97, "min_gate_agreement": 0.995},
}
PROFILE_BYTES = 1 << 16  # a parity_profile.json is a few hundred bytes
NPZ_MEMBERS = ["batch.npy", "images.npy", "mean.npy", "std.npy"]
MAX_IMAGES = 100000  # reference images in an inputs.npz (the toolkit writes a few hundred)
MAX_IMAGE_BYTES = 1 << 30  # their uint8 array
SMALL_MEMBER = 4096  # mean.npy, std.npy, batch.npy: a header and a few values
HEADER_BYTES = 1 << 16  # room for a .npy header (numpy writes 128 bytes and refuses one over 10000)
MAX_RATIO = 100  # size : deflated size of a member (np.savez stores them; savez_compressed deflates images ~2:1)
MAX_OUTPUTS_BYTES = 256 << 20  # a RunResults JSON (the toolkit's reference.json of a few hundred images: a few MB);
# parsed, decoded and parsed again by Polygraphy it takes about four times its size
POLYGRAPHY_CLASSES = ("RunResults", "IterationResult", "ndarray", "LazyArray", "LazyNumpyArray")


def float_feeds(images, mean, std, batch=1, name=INPUT):
    """Feeds {name: float32 [batch, 3, H, W]} of uint8 NHWC ``images``: (x / 255 - mean) / std per channel, computed
    in float32; whole batches only. The one definition of the model's input the desktop and the board share."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be uint8 N x H x W x 3, not {images.dtype} {list(images.shape)}")
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    x = (images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0) - mean) / std
    count = len(x) // batch * batch
    return [{name: np.ascontiguousarray(x[i : i + batch])} for i in range(0, count, batch)]


def save_inputs(file, images, mean, std, batch=1):
    """Write the reference images (uint8 NHWC) with their normalization and batch as an .npz (``file``: path or
    binary file object)."""
    np.savez(file, images=np.ascontiguousarray(images, dtype=np.uint8), mean=np.asarray(mean, dtype=np.float32),
             std=np.asarray(std, dtype=np.float32), batch=np.asarray(int(batch), dtype=np.int64))


def read_inputs(path):
    """(uint8 NHWC images, mean, std, batch) of an inputs .npz, checked: before loading, its members' sizes and
    headers (``check_npz``); after, plain arrays only (no pickle), the expected shapes and types; ValueError naming
    the problem otherwise."""
    check_npz(path)
    try:
        with np.load(str(path), allow_pickle=False) as data:
            images, mean, std, batch = data["images"], data["mean"], data["std"], data["batch"]
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged member: bad CRC, cut-off deflate data
        raise ValueError(f"a member is damaged ({type(exc).__name__})") from None
    except MemoryError:
        raise ValueError("its arrays do not fit in memory") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or len(images) == 0:
        raise ValueError(f"images are {images.dtype} {list(images.shape)}, not uint8 N x H x W x 3")
    for label, v in (("mean", mean), ("std", std)):
        if v.shape != (3,) or v.dtype != np.float32 or not np.all(np.isfinite(v)):
            raise ValueError(f"{label} is not 3 finite float32 values")
    if not np.all(std > 0):
        raise ValueError("std is not positive")
    if batch.shape != () or batch.dtype.kind not in "iu" or not 1 <= int(batch) <= len(images):
        raise ValueError(f"batch {batch!r} is not a whole number from 1 to the image count")
    return images, mean, std, int(batch)


def check_npz(path):
    """Check an inputs .npz before numpy allocates anything for it: a regular file holding exactly batch, images,
    mean and std; each member of a bounded size (images.npy: MAX_IMAGE_BYTES and a header), deflated at most
    MAX_RATIO:1, its .npy header declaring as many bytes as it holds; images uint8 N x H x W x 3 with N up to
    MAX_IMAGES. ValueError naming the problem otherwise."""
    if not stat.S_ISREG(os.stat(str(path)).st_mode):
        raise ValueError("not a regular file (a FIFO, device, ...)")
    try:
        with zipfile.ZipFile(str(path)) as archive:
            members = archive.infolist()
            names = sorted(m.filename for m in members)
            if names != NPZ_MEMBERS:
                raise ValueError(f"holds {shown(names)}, not {', '.join(NPZ_MEMBERS)}")
            headers = {m.filename: npz_member_header(archive, m) for m in members}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:  # RuntimeError: encrypted
        raise ValueError(f"not a readable .npz ({type(exc).__name__})") from None
    shape, dtype = headers["images.npy"]
    if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or min(shape) < 1:
        raise ValueError(f"images are {shown(dtype)} {shown(list(shape))}, not uint8 N x H x W x 3")
    if shape[0] > MAX_IMAGES:
        raise ValueError(f"holds {shape[0]} images, over {MAX_IMAGES}")


def npz_member_header(archive, member):
    """(shape, dtype) of one .npy member of an open .npz, from its header, with the member's size checked first."""
    limit = MAX_IMAGE_BYTES + HEADER_BYTES if member.filename == "images.npy" else SMALL_MEMBER
    if member.file_size > limit:
        raise ValueError(f"{member.filename} is {member.file_size} bytes, over {limit}")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{member.filename} is compressed by method {member.compress_type}, not stored or deflated")
    if member.compress_type == zipfile.ZIP_DEFLATED and member.file_size > MAX_RATIO * max(member.compress_size, 1):
        raise ValueError(f"{member.filename} inflates {member.compress_size} bytes to {member.file_size}, over {MAX_RATIO}:1")
    with archive.open(member) as handle:
        return npy_header(member.filename, handle.read(min(member.file_size, HEADER_BYTES)), member.file_size)


def npy_header(name, head, size):
    """(shape, dtype) from the first bytes ``head`` of a .npy of ``size`` bytes: format 1.0 or 2.0, no Python
    objects, and a header that declares as many bytes of data as the file holds (numpy would allocate what it
    declares before reading). ValueError naming ``name`` otherwise."""
    if not head.startswith(np.lib.format.MAGIC_PREFIX):
        raise ValueError(f"{name} is not a .npy (its first bytes are {shown(head[:8])})")
    head = io.BytesIO(head)
    version = np.lib.format.read_magic(head)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"{name} is .npy format {version}, not 1.0 or 2.0")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(head)
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects (a pickle), not plain values")
    declared = dtype.itemsize * math.prod(shape)
    if min(shape, default=0) < 0 or declared != size - head.tell():
        raise ValueError(f"{name} declares {shown(dtype)} {shown(list(shape))} but holds {size - head.tell()} bytes of data")
    return shape, dtype


def check_arrays(document):
    """Check a parsed Polygraphy JSON before Polygraphy decodes it: every object at any depth is plain data or one of
    the classes run results and feeds are made of (POLYGRAPHY_CLASSES), and every array is a base64 .npy, as
    Polygraphy writes them (see npy_header). What Polygraphy still reads besides is refused: the older
    ``__polygraphy_encoded_*`` markers, .npz payloads (a zip can inflate far past the file), latin-1 payloads, and
    any other class (a ``Tensor`` goes to torch.load). ValueError naming the problem otherwise."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
            marker = [k for k, v in node.items() if k.startswith("__polygraphy") or v == "polygraphy_serialized_json_type"]
            if marker:
                raise ValueError(f"an object in Polygraphy's older encoding ({shown(marker[0])})")
            kind = node.get("polygraphy_class")
            if kind is not None and kind not in POLYGRAPHY_CLASSES:
                raise ValueError(f"an object of class {shown(kind)}, not run results or arrays")
            if kind == "ndarray":
                payload = node.get("array")
                if not isinstance(payload, str):
                    raise ValueError("an array without a base64 'array' payload")
                data = base64.b64decode(payload.encode("ascii"), validate=True)
                npy_header("an array", data[:HEADER_BYTES], len(data))


def read_polygraphy_json(path):
    """(text, parsed JSON) of the Polygraphy JSON at ``path`` (run results or feeds), checked before Polygraphy
    reads it: a regular file of at most MAX_OUTPUTS_BYTES whose objects pass check_arrays. OSError or ValueError
    naming the problem otherwise; Polygraphy's from_json of the text is then safe."""
    info = os.stat(str(path))
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file (a FIFO, device, ...)")
    if info.st_size > MAX_OUTPUTS_BYTES:
        raise ValueError(f"{info.st_size} bytes, over the {MAX_OUTPUTS_BYTES} this toolkit reads")
    text = Path(path).read_text()
    data = json.loads(text)
    check_arrays(data)
    return text, data


def shown(value, width=60):
    """``value`` as text, cut to ``width`` characters (a hostile file's value stays a short line)."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def load_inputs(path):
    """The float feeds of an inputs .npz (``float_feeds`` of its images)."""
    images, mean, std, batch = read_inputs(path)
    try:
        return float_feeds(images, mean, std, batch)
    except MemoryError:
        raise ValueError(f"the float feeds of its {len(images)} images do not fit in memory") from None


def load_data():
    """Polygraphy's data loader (``polygraphy run ... --data-loader-script check_parity.py``): the feeds of the
    bundle's inputs.npz beside this file; a file that is not one ends the run with one line and exit status 2."""
    try:
        return load_inputs(HERE / INPUTS)
    except (OSError, ValueError) as exc:
        print(f"error: {HERE / INPUTS} is not the bundle's reference inputs ({' '.join(str(exc).split())}); unpack the "
              "bundle again.",
              file=sys.stderr)
        sys.exit(2)


def load_outputs(path, reference=False):
    """{"logits", "gates"} stacked over the iterations of the first runner in a Polygraphy RunResults JSON (the
    engine's outputs, or with ``reference`` the PyTorch reference); a file that is missing or holds no such outputs
    ends the check with one line and exit status 2."""
    try:
        from polygraphy.comparator import RunResults
    except ImportError:
        print("error: check_parity.py reads Polygraphy's outputs and needs Polygraphy: pip3 install polygraphy "
              "(with 'numpy<1.24' on JetPack 5.1).", file=sys.stderr)
        sys.exit(2)
    if not Path(path).is_file():
        fix = ("pass --reference REF.json: the bundle's reference.json, or one cosinegate parity --save-reference wrote"
               if reference else "pass the outputs polygraphy run ... --save-outputs wrote")
        print(f"error: {'reference ' if reference else ''}{path} not found; {fix}.", file=sys.stderr)
        sys.exit(2)
    try:
        text, data = read_polygraphy_json(path)
        if not isinstance(data, dict) or data.get("polygraphy_class") != "RunResults":  # before Polygraphy logs its lines
            raise ValueError("not a RunResults file")
        results = RunResults.from_json(text)
        _, iterations = results[0]
        return {name: np.concatenate([np.asarray(it[name]) for it in iterations]) for name in ("logits", "gates")}
    except Exception as exc:  # a file format boundary: whatever Polygraphy or the layout raise, say which file
        print(f"error: {path} holds no Polygraphy outputs with 'logits' and 'gates' ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); save them with polygraphy run ... --save-outputs "
              "on the bundle's inputs (--data-loader-script check_parity.py).", file=sys.stderr)
        sys.exit(2)


class NoSamples(ValueError):
    """The reference holds no samples (or not logits and gates of N samples)."""


class OtherShapes(ValueError):
    """The outputs are not of the reference's shapes (other images, another graph)."""


def check(reference, outputs, profile):
    """The parity verdict of stacked outputs ({"logits", "gates"}) against the reference under a profile dict: the
    toolkit's one rule (the desktop's reports call it too). Logits within atol + rtol * |reference| per element where
    the profile bounds them, and finite always; top-1 and gate-decision (> 0.5) agreement at least the profile's
    minimums. NoSamples or OtherShapes (ValueErrors) when the shapes do not allow a comparison."""
    ref_logits, logits = np.asarray(reference["logits"], np.float64), np.asarray(outputs["logits"], np.float64)
    ref_gates, gates = np.asarray(reference["gates"]) > 0.5, np.asarray(outputs["gates"]) > 0.5
    if ref_logits.ndim != 2 or ref_gates.ndim != 2 or len(ref_logits) == 0:
        raise NoSamples(f"the reference holds no samples (logits {list(ref_logits.shape)}, gates {list(ref_gates.shape)})")
    if ref_logits.shape != logits.shape or ref_gates.shape != gates.shape:
        raise OtherShapes(f"outputs {list(logits.shape)}/{list(gates.shape)} do not match the reference "
                         f"{list(ref_logits.shape)}/{list(ref_gates.shape)}")
    error = np.abs(logits - ref_logits)
    atol, rtol = profile.get("logits_atol"), profile.get("logits_rtol")
    within = bool(np.all(np.isfinite(logits)))
    if atol is not None:
        within = within and bool(np.all(error <= atol + (rtol or 0.0) * np.abs(ref_logits)))
    top1 = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
    per_block = (gates == ref_gates).mean(0)
    gate = float((gates == ref_gates).mean())
    passed = within and top1 >= profile["min_top1_agreement"] and gate >= profile["min_gate_agreement"]
    worst = float(error.max())
    return {"passed": bool(passed), "profile": profile["profile"], "num_samples": int(len(ref_logits)),
            "logits_within_tolerance": within, "max_abs_logit_error": worst if math.isfinite(worst) else None,
            "top1_agreement": top1, "gate_agreement": gate,
            "gate_agreement_per_block": [float(a) for a in per_block],
            "flipped_blocks": [f"block{i}" for i, a in enumerate(per_block) if a < 1.0]}


def summary(r, profile, where=""):
    """The verdict in one line with the limits it was judged by; `where` (e.g. "conditional graph on onnxrt, ") names
    what ran."""
    verdict = "PASSED" if r["passed"] else "FAILED"
    bound = "none" if profile.get("logits_atol") is None else f"atol {profile['logits_atol']:g} rtol {profile['logits_rtol'] or 0:g}"
    flipped = f"; gate decisions differ in {', '.join(r['flipped_blocks'])}" if r["flipped_blocks"] else ""
    return (f"parity {verdict} ({r['profile']}, {where}{r['num_samples']} images): top-1 agreement {r['top1_agreement']:.4f} "
            f"(min {profile['min_top1_agreement']}), gate agreement {r['gate_agreement']:.4f} (min {profile['min_gate_agreement']}), "
            f"max |logits error| {worst_error(r['max_abs_logit_error'])} (bound: {bound}{', exceeded' if not r['logits_within_tolerance'] else ''})"
            f"{flipped}")


def worst_error(value):
    """The largest logit error as text ("not finite" where an output was NaN or infinite)."""
    return "not finite" if value is None else f"{value:.3g}"


def read_profile(path):
    """The parity profile in ``path``, checked (``profile_problem``); a file that is unreadable or fails the check
    ends it with one line and exit status 2."""
    try:
        if not stat.S_ISREG(os.stat(str(path)).st_mode):
            raise OSError("a FIFO, device or folder, not a regular file")
        with open(str(path), "rb") as handle:
            text = handle.read(PROFILE_BYTES + 1)
        if len(text) > PROFILE_BYTES:
            raise ValueError(f"over {PROFILE_BYTES} bytes")
        profile = json.loads(text)
        problem = profile_problem(profile) if isinstance(profile, dict) else "is not a JSON object"
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = f"is not readable JSON ({type(exc).__name__}: {shown(exc)})"
    if problem:
        print(f"error: parity profile {path} {problem}; use the bundle's own parity_profile.json (unpack it again).",
              file=sys.stderr)
        sys.exit(2)
    return {key: profile.get(key) if key == "profile" or profile.get(key) is None else float(profile[key])
            for key in PROFILES[profile["profile"]]}


def profile_problem(profile):
    """What is wrong with a parity profile (a dict), None when nothing is: the profile one of PROFILES, agreement
    minimums finite numbers in 0..1, atol/rtol null or finite and >= 0, and no bound looser than the profile's own."""
    def number(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        try:
            value = float(value)
        except OverflowError:  # an integer of 309 digits or more
            return None
        return value if math.isfinite(value) else None

    name = profile.get("profile")
    if not isinstance(name, str) or name not in PROFILES:
        return f"has profile {shown(repr(name))}, not one of {', '.join(PROFILES)}"
    for key in ("min_top1_agreement", "min_gate_agreement"):
        value = number(profile.get(key))
        if value is None or not 0 <= value <= 1:
            return f"has {key} {shown(repr(profile.get(key)))}, not a number from 0 to 1"
    for key in ("logits_atol", "logits_rtol"):
        value = profile.get(key)
        if value is not None and (number(value) is None or value < 0):
            return f"has {key} {shown(repr(value))}, not null or a finite number >= 0"
    own = PROFILES[name]
    looser = [key for key, have, bound in zip(("logits_atol", "logits_rtol"), logit_bounds(profile), logit_bounds(own))
              if have > bound]
    looser += [key for key in ("min_top1_agreement", "min_gate_agreement") if profile[key] < own[key]]
    if looser:
        return f"is looser than the {name} profile in {', '.join(looser)} ({', '.join(f'{k} {own[k]}' for k in looser)})"
    return None


def logit_bounds(profile):
    """(atol, rtol) as ``check`` applies them: no bound (inf) where atol is null, rtol null = 0."""
    atol = profile.get("logits_atol")
    return (math.inf, math.inf) if atol is None else (float(atol), float(profile.get("logits_rtol") or 0))


def is_own_reference(reference):
    """Whether ``reference`` is the default one, the bundle's own reference.json."""
    return Path(reference).resolve() == (HERE / "reference.json").resolve()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", help="Polygraphy RunResults JSON of the device run (polygraphy run --save-outputs)")
    parser.add_argument("--reference", default=str(HERE / "reference.json"),
                        help="the PyTorch reference (default: the bundle's reference.json, its own graph's; a selection "
                             "candidate's outputs need its reference.<candidate>.json)")
    parser.add_argument("--profile", default=str(HERE / "parity_profile.json"),
                        help="the limits the outputs are judged by: top-1 and gate-decision agreement, logit bounds "
                             "(default: the bundle's parity_profile.json, its precision's)")
    parser.add_argument("--json", metavar="REPORT", help="write the verdict as JSON here")
    args = parser.parse_args(argv)
    outputs = load_outputs(args.outputs)  # the file named first is checked first
    reference = load_outputs(args.reference, reference=True)
    profile = read_profile(args.profile)
    try:
        report = check(reference, outputs, profile)
    except ValueError as exc:
        fix = ("use the bundle's reference.json (unpack the bundle again)" if isinstance(exc, NoSamples)
               else "run the bundle's graph on its inputs (--data-loader-script check_parity.py)")
        print(f"error: {exc}; {fix}.", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - exit 1 is the verdict FAILED; anything else could not judge (status 2)
        print(f"error: the outputs could not be judged ({type(exc).__name__}: {shown(exc)}); check numpy and Polygraphy "
              "(pip3 install 'numpy<1.24' polygraphy on JetPack 5.1).", file=sys.stderr)
        return 2
    print(summary(report, profile))
    others = sorted(p.name for p in HERE.glob("reference.*.json"))
    if not report["passed"] and is_own_reference(args.reference) and others:
        print(f"note: judged against the bundle's own graph's reference.json; outputs of a selection candidate's engine "
              f"need its reference: --reference {' or '.join(others)}")
    if args.json:
        problem = write_report(Path(args.json), json.dumps(report, indent=2, allow_nan=False) + "\n")
        if problem:
            print(f"error: --json {args.json} {problem}; name a new file or a plain one.", file=sys.stderr)
            return 2
    return 0 if report["passed"] else 1


def write_report(path, text):
    """Write ``text`` to a fresh file beside ``path`` and rename it over ``path``: a link, FIFO or device planted
    there is refused, not written through. Why it was refused, or None."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return "is a link or not a regular file"
    fresh, handle = path.with_name(f".{path.name}.{os.getpid()}.tmp"), None
    try:
        handle = os.open(str(fresh), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(str(fresh), str(path))
    except OSError as exc:
        if handle is not None and fresh.exists():  # ours: made above, not renamed
            fresh.unlink()
        return f"could not be written ({exc.strerror or type(exc).__name__})"
    return None


if __name__ == "__main__":
    sys.exit(main())
