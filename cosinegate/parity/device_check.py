"""Parity of a device run against the bundle's PyTorch reference, without PyTorch (the bundle's check_parity.py).

    polygraphy run MODEL --trt [--fp16|--int8] --data-loader-script check_parity.py --save-outputs outputs.json
    python3 check_parity.py outputs.json

The reference images travel once, as uint8 (inputs.npz: NHWC images, the model's mean/std and batch); this file is
also Polygraphy's data loader (``load_data``), which makes the float feeds with ``float_feeds``: the same numpy
function the desktop fed PyTorch and ONNX Runtime when it made reference.json, so the inputs match bit for bit.

reference.json and parity_profile.json are read from beside this file (or --reference/--profile).
The profile is the precision's: logits within atol/rtol per element (no bound where null), top-1
agreement and gate-decision agreement at least their minimums (1.0 = exact). Prints top-1
agreement, gate agreement, the blocks whose decisions differ and the largest logit error; exit
status 0 when parity holds, 1 when it fails. Needs numpy and Polygraphy only (Python 3.8+).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INPUTS = "inputs.npz"  # the reference images beside this file
INPUT = "input"  # the graph's input name


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
    """(uint8 NHWC images, mean, std, batch) of an inputs .npz, checked: plain arrays only (no pickle), the expected
    keys, shapes and types; ValueError naming the problem otherwise."""
    with np.load(str(path), allow_pickle=False) as data:
        keys = sorted(data.files)
        if keys != ["batch", "images", "mean", "std"]:
            raise ValueError(f"holds {keys}, not batch, images, mean, std")
        images, mean, std, batch = data["images"], data["mean"], data["std"], data["batch"]
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


def load_inputs(path):
    """The float feeds of an inputs .npz (``float_feeds`` of its images)."""
    images, mean, std, batch = read_inputs(path)
    return float_feeds(images, mean, std, batch)


def load_data():
    """Polygraphy's data loader (``polygraphy run ... --data-loader-script check_parity.py``): the feeds of the
    bundle's inputs.npz beside this file."""
    return load_inputs(HERE / INPUTS)


def load_outputs(path):
    """{"logits", "gates"} stacked over the iterations of the first runner in a Polygraphy RunResults JSON;
    a file that is missing or holds no such outputs ends the check with one line and exit status 2."""
    from polygraphy.comparator import RunResults

    try:
        text = Path(path).read_text()
        if json.loads(text).get("polygraphy_class") != "RunResults":  # before Polygraphy logs its own lines
            raise ValueError("not a RunResults file")
        results = RunResults.from_json(text)
        _, iterations = results[0]
        return {name: np.concatenate([np.asarray(it[name]) for it in iterations]) for name in ("logits", "gates")}
    except Exception as exc:  # a file format boundary: whatever Polygraphy or the layout raise, say which file
        print(f"error: {path} holds no Polygraphy outputs with 'logits' and 'gates' ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); save them with polygraphy run ... --save-outputs "
              "on the bundle's inputs (--data-loader-script check_parity.py).", file=sys.stderr)
        sys.exit(2)


def check(reference, outputs, profile):
    """The parity verdict of stacked outputs against the reference under a profile dict."""
    ref_logits, logits = np.asarray(reference["logits"], np.float64), np.asarray(outputs["logits"], np.float64)
    ref_gates, gates = np.asarray(reference["gates"]) > 0.5, np.asarray(outputs["gates"]) > 0.5
    if ref_logits.shape != logits.shape or ref_gates.shape != gates.shape:
        raise SystemExit(f"error: outputs {logits.shape}/{gates.shape} do not match the reference "
                         f"{ref_logits.shape}/{ref_gates.shape}; run the bundle's graph on its inputs (--data-loader-script check_parity.py).")
    error = np.abs(logits - ref_logits)
    atol, rtol = profile.get("logits_atol"), profile.get("logits_rtol")
    within = True
    if atol is not None:
        within = bool(np.all(error <= atol + (rtol or 0.0) * np.abs(ref_logits)))
    top1 = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
    per_block = (gates == ref_gates).mean(0)
    gate = float((gates == ref_gates).mean())
    passed = within and top1 >= profile["min_top1_agreement"] and gate >= profile["min_gate_agreement"]
    return {"passed": bool(passed), "profile": profile["profile"], "num_samples": int(len(ref_logits)),
            "logits_within_tolerance": within, "max_abs_logit_error": float(error.max()), "top1_agreement": top1,
            "gate_agreement": gate, "flipped_blocks": [f"block{i}" for i, a in enumerate(per_block) if a < 1.0]}


def summary(r, profile):
    verdict = "PASSED" if r["passed"] else "FAILED"
    bound = "none" if profile.get("logits_atol") is None else f"atol {profile['logits_atol']:g} rtol {profile['logits_rtol']:g}"
    flipped = f"; gate decisions differ in {', '.join(r['flipped_blocks'])}" if r["flipped_blocks"] else ""
    return (f"parity {verdict} ({r['profile']}, {r['num_samples']} images): top-1 agreement {r['top1_agreement']:.4f} "
            f"(min {profile['min_top1_agreement']}), gate agreement {r['gate_agreement']:.4f} (min {profile['min_gate_agreement']}), "
            f"max |logits error| {r['max_abs_logit_error']:.3g} (bound: {bound}{', exceeded' if not r['logits_within_tolerance'] else ''})"
            f"{flipped}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", help="Polygraphy RunResults JSON of the device run (polygraphy run --save-outputs)")
    parser.add_argument("--reference", default=str(HERE / "reference.json"))
    parser.add_argument("--profile", default=str(HERE / "parity_profile.json"))
    parser.add_argument("--json", metavar="REPORT", help="write the verdict as JSON here")
    args = parser.parse_args(argv)
    profile = json.loads(Path(args.profile).read_text())
    report = check(load_outputs(args.reference), load_outputs(args.outputs), profile)
    print(summary(report, profile))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
