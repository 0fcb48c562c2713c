"""What a failed INT8 preview leads to: measured advice (every calibration method tried on the same calibration
images, each Q/DQ graph put through the same preview on ONNX Runtime, a table and the command of the best that
passes) and, with --require-int8-pass, a failed deploy (``Int8CheckFailed``) before any bundle is written."""

import shlex
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.progress import warn

PERCENTILE = 99.99  # calibrate's default --percentile
TRIALS = (("minmax", None), ("entropy", None), ("percentile", PERCENTILE), ("percentile", 99.999))


class Int8CheckFailed(CosineGateError):
    """--require-int8-pass and the INT8 preview failed (or could not run): no bundle was written. The command exits 1."""


def trial_label(method, percentile):
    return method if method != "percentile" else f"percentile {percentile:g}"


def calibration_images(manifest, data):
    """(the calibration set, how it was obtained): the very images the calibration in ``manifest`` used, looked up by
    id in the train split of ``data`` (a DataChoice); a fresh sample when they are not all there."""
    import numpy as np

    from cosinegate.quant.calibset import DEFAULT_COUNT, CalibrationSet, select

    train = data.train
    source = manifest.get("calibration") or {}
    ids = source.get("ids") or []
    where = {image_id: i for i, image_id in enumerate(train.ids)}
    root = None if data.root is None else str(data.root)
    if ids and all(i in where for i in ids):
        idx = np.asarray([where[i] for i in ids])
        return (CalibrationSet(train.images[idx], train.labels[idx], list(ids), data.source, root, int(source.get("seed", 0))),
                f"the calibration's {len(ids)} images")
    count = min(int(source.get("num_images") or DEFAULT_COUNT), len(train))
    return select(train, count, int(source.get("seed") or 0), data.source, root), f"a fresh sample of {count} train images"


def measure_methods(checkpoint, calibration_dir, data, form, inputs_json, reference_json, failed=None, log=print):
    """Calibrate ``checkpoint`` with each of TRIALS but the one ``calibration_dir`` holds, on the same images, and run
    the preview (qdq_preview) of each ``form`` Q/DQ graph against the saved reference.
    ``failed``: the preview of the calibration itself (its row). Returns the advice record: rows, best, commands."""
    import json
    import tempfile

    from cosinegate.pipeline.calibration import default_calibration_dir
    from cosinegate.pipeline.stages import calibration_forms
    from cosinegate.quant.calibrate import calibrate
    from cosinegate.quant.names import DEFAULT_TRT, FILE_BY_FORM, MANIFEST_NAME

    manifest = json.loads((Path(calibration_dir) / MANIFEST_NAME).read_text())
    current = (manifest.get("method"), manifest.get("percentile") if manifest.get("method") == "percentile" else None)
    rows = []
    if failed is not None:
        rows.append(row(trial_label(*current) + " (this build)", failed, current))
    trials = [t for t in TRIALS if t != current]
    calib_set, images = calibration_images(manifest, data)
    log(f"INT8 advice: trying {len(trials)} calibration method(s) on {images}, each previewed on ONNX Runtime")
    with tempfile.TemporaryDirectory(prefix="cg-int8-advice.") as tmp:
        for k, (method, percentile) in enumerate(trials, 1):
            label = trial_label(method, percentile)
            log(f"INT8 advice: {k}/{len(trials)} {label}")
            result = calibrate(checkpoint, calib_set, method, percentile=percentile or PERCENTILE,
                               trt_version=manifest.get("trt_version") or DEFAULT_TRT, forms=calibration_forms(form),
                               policy=manifest.get("policy") or "auto")
            graph = Path(tmp) / method.replace(" ", "") / f"{percentile or ''}" / FILE_BY_FORM[form]
            graph.parent.mkdir(parents=True, exist_ok=True)
            graph.write_bytes(result.files[FILE_BY_FORM[form]])
            rows.append(row(label, qdq_preview(graph, inputs_json, reference_json), (method, percentile)))
    passing = [r for r in rows[1 if failed is not None else 0:] if r["passed"]]
    best = max(passing, key=lambda r: (r["top1_agreement"], r["gate_agreement"])) if passing else None
    out = default_calibration_dir(checkpoint)
    record = {"images": images, "rows": rows, "best": best["method"] if best else None, "commands": []}
    if best:
        flags = ["--method", best["method"]] + (["--percentile", f"{best['percentile']:g}"] if best["percentile"] else [])
        count, seed = len(calib_set), calib_set.seed
        record["commands"] = [
            shlex.join(["cosinegate", "calibrate", "--checkpoint", str(checkpoint), *flags, "--calib-images", str(count),
                        "--seed", str(seed), "--forms", ",".join(calibration_forms(form)), "--out", str(out)]),
            f"then build again: build-engine reuses {out} (or pass --calibration {shlex.quote(str(out))})"]
    return record


def row(label, report, trial):
    return {"label": label, "method": trial[0], "percentile": trial[1], "passed": bool(report["passed"]),
            "top1_agreement": float(report["top1_agreement"]), "gate_agreement": float(report["gate_agreement"])}


def advice_lines(advice):
    """The measured table and what to do: the best passing method's commands, or fp16 when none passes."""
    from cosinegate.parity import INT8

    lines = [f"{'method':28s} {'top-1 agr':>9s} {'gate agr':>9s}  check (int8 profile: top-1 >= {INT8.min_top1}, "
             f"gates >= {INT8.min_gate_agreement})"]
    for r in advice["rows"]:
        mark = "  <- best" if advice["best"] and r["method"] == advice["best"] and "(this build)" not in r["label"] \
            and r["passed"] else ""
        lines.append(f"{r['label']:28s} {r['top1_agreement']:9.4f} {r['gate_agreement']:9.4f}  "
                     f"{'pass' if r['passed'] else 'FAIL'}{mark}")
    if advice["best"]:
        lines.append(f"use {advice['best']}:")
        lines += [f"  {c}" for c in advice["commands"]]
    else:
        lines.append(f"no calibration method passes on {advice['images']}: build fp16 (--precision fp16), or calibrate "
                     "on more images (cosinegate calibrate --calib-images N, then cosinegate build-engine --calibration DIR)")
    return lines


def verdict(s, art, preview, log=print):
    """After the preview (``preview``: its manifest record, None when none could be made): on failure the measured
    advice as a warning (a Log's stderr; recorded under "advice"); with ``s.require_int8_pass`` a failed, unrun or
    impossible preview raises Int8CheckFailed. Returns the record."""
    if preview is not None and preview.get("passed") is False and s.checkpoint and art.calibration and art.data_choice:
        try:
            advice = measure_methods(s.checkpoint, art.calibration, art.data_choice, s.form, art.inputs, art.reference,
                                     failed=preview, log=log)  # its step lines follow --quiet; the advice is a warning
        except Exception as exc:  # noqa: BLE001 - calibration, Polygraphy and ONNX Runtime raise many types; advice is a help
            warn(log, f"warning: the calibration methods could not be tried ({type(exc).__name__}: {str(exc)[:160]})")
        else:
            warn(log, "\n".join(advice_lines(advice)))
            preview["advice"] = advice
    if s.require_int8_pass and (preview is None or preview.get("passed") is not True):
        if preview is None:
            why = "no Q/DQ graph could be previewed (pass --calibration DIR, or --int8 qdq)"
        elif preview.get("passed") is None:
            why = "the INT8 preview could not run on ONNX Runtime"
        else:
            why = (f"the INT8 preview failed (top-1 agreement {preview['top1_agreement']:.4f}, gate agreement "
                   f"{preview['gate_agreement']:.4f})")
            best = (preview.get("advice") or {}).get("best")
            why += f"; {best} passes here (commands above)" if best else "; build fp16 (--precision fp16)"
        raise Int8CheckFailed(f"--require-int8-pass: {why}; no bundle written.")
    return preview


def qdq_preview(qdq, inputs_json, reference_json):
    """The bundle's INT8 check run here on ONNX Runtime with the Q/DQ graph: a forecast, not the engine's verdict.
    The Q/DQ graphs have batch 1, so a masked bundle's batches are fed one image at a time (gates are per image)."""
    from cosinegate.parity.compare import graph_runner, saved_feeds
    from cosinegate.pipeline.engine import saved_parity

    feeds = [{name: x[i : i + 1] for name, x in feed.items()} for feed in saved_feeds(inputs_json)
             for i in range(len(next(iter(feed.values()))))]
    return saved_parity(graph_runner(qdq, "onnxrt"), feeds, reference_json, "int8")
