"""The pipeline stages (export, calibration, reference) run in a work folder, reused by input hash.

Each stage artifact gets a ``<file>.stage.json`` beside it holding the hashes of its inputs and of
the file itself; ``reusable`` says whether a stage can be skipped (same inputs, file unchanged).
``deploy/build_engine.py`` runs the stages and hands their artifacts to ``cosinegate.trt`` (engine
build, device bundle).
"""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, sha256_file
from cosinegate.errors import CosineGateError

STAGE_FORMAT = "cosinegate-stage-v1"
ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SAMPLES = 16


def model_name(path):
    """The model's name for output files: its run folder's (best.pt/last.pt) or file's name, as a plain name
    (anything but letters, digits, '.', '_', '+', '-' becomes '_'), so no path or shell text reaches a file name."""
    path = Path(path)
    name = path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem.split(".")[0]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".-") or "model"


class Stages:
    """Runs the pipeline stages in ``workdir``, reusing artifacts whose input hashes match."""

    def __init__(self, workdir, log=print):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.reused, self.made = [], []

    def _stage(self, artifact, inputs, make, companions=()):
        if reusable(artifact, inputs, companions):
            self.reused.append(Path(artifact).name)
            self.log(f"reused {artifact} (inputs unchanged)")
            return Path(artifact)
        make()
        record_stage(artifact, inputs, companions)
        self.made.append(Path(artifact).name)
        return Path(artifact)

    def export(self, checkpoint, form, batch, opset, policy="auto", name=None, if_cost_table=None):
        """model.<name or form>.onnx (the selection's candidates are named after their policy)."""
        from cosinegate.onnx import export_checkpoint

        out = self.workdir / f"model.{name or form}.onnx"
        inputs = {"stage": "export", "checkpoint_sha256": sha256_file(checkpoint), "form": form, "batch": batch,
                  "opset": opset, "policy": policy}
        if if_cost_table:
            inputs["if_cost_table_sha256"] = sha256_file(if_cost_table)
        return self._stage(out, inputs, lambda: export_checkpoint(checkpoint, out, form, batch, opset, policy,
                                                                  if_cost_table=if_cost_table))

    def calibrate(self, checkpoint, data=None, data_root=None):
        """INT8 calibration output dir (model.qdq*.onnx, calibration.cache, manifest.json)."""
        out = self.workdir / "calibration"
        marker = out / "manifest.json"
        inputs = {"stage": "calibrate", "checkpoint_sha256": sha256_file(checkpoint), "data": data, "data_root": data_root}
        self._stage(marker, inputs, lambda: run_calibration(checkpoint, out, data, data_root))
        return out

    def reference(self, checkpoint, onnx_path, data=None, data_root=None, samples=REFERENCE_SAMPLES, tag=""):
        """Polygraphy inputs<tag>.json / reference<tag>.json (PyTorch outputs), via deploy/parity.py's machinery."""
        out = self.workdir / f"reference{tag}.json"
        inputs_json = self.workdir / f"inputs{tag}.json"
        stage_inputs = {"stage": "reference", "checkpoint_sha256": sha256_file(checkpoint),
                        "onnx_sha256": sha256_file(onnx_path), "data": data, "data_root": data_root, "samples": samples}

        def make():
            report = run_reference(checkpoint, onnx_path, out, inputs_json, data, data_root, samples)
            if not report["passed"]:
                raise CosineGateError(f"parity of the exported graph failed before bundling: {report['summary']}")

        self._stage(out, stage_inputs, make, companions=(inputs_json,))
        return out, inputs_json


def run_reference(checkpoint, onnx_path, reference, inputs_json, data=None, data_root=None, samples=REFERENCE_SAMPLES, backend="onnxrt"):
    from cosinegate.data import load_dataset
    from cosinegate.onnx import load_toolkit_onnx
    from cosinegate.parity import FP32, run_parity
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    graph = load_toolkit_onnx(onnx_path)
    _, test = load_dataset(data or "synthetic", data_root, image_size=model.image_size)
    return run_parity(model, graph, str(onnx_path), test, backend, samples, FP32, str(inputs_json) if inputs_json else None,
                      str(reference) if reference else None)


def run_calibration(checkpoint, out, data=None, data_root=None):
    """Call the INT8 calibration library when present, else calibration/calibrate.py; else refuse."""
    if importlib.util.find_spec("cosinegate.quant.calibrate") is not None and importlib.util.find_spec("cosinegate.quant.calibset"):
        from cosinegate.quant.calibrate import calibrate, write_outputs
        from cosinegate.quant.calibset import load_calibration_set
        from cosinegate.training.checkpoint import image_size_of, load_checkpoint

        size = image_size_of(load_checkpoint(checkpoint))
        write_outputs(calibrate(checkpoint, load_calibration_set(data or "synthetic", data_root, image_size=size)), out)
        return
    script = ROOT / "calibration" / "calibrate.py"
    if not script.is_file():
        raise CosineGateError(
            "INT8 needs calibration data or a cache, and this checkout has no calibration stage "
            "(cosinegate/quant/calibrate.py or calibration/calibrate.py); pass --calibration DIR or --calib-cache FILE, "
            "or build fp16/fp32."
        )
    command = [sys.executable, str(script), "--checkpoint", str(checkpoint), "--out", str(out)]
    if data:
        command += ["--data", data] + (["--data-root", str(data_root)] if data_root else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CosineGateError(f"INT8 calibration failed ({last}); fix the calibration data or pass --calib-cache FILE.")


def calibration_files(calib_dir, form):
    """(Q/DQ graph for ``form`` or None, calibration cache or None) from a calibration output dir."""
    calib_dir = Path(calib_dir)
    qdq = calib_dir / ("model.qdq.conditional.onnx" if form == "conditional" else "model.qdq.onnx")
    cache = calib_dir / "calibration.cache"
    return (qdq if qdq.is_file() else None), (cache if cache.is_file() else None)


def stage_record_path(artifact):
    return Path(f"{artifact}.stage.json")


def reusable(artifact, inputs, companions=()):
    """True when ``artifact`` (and each companion file made with it) exists, is unchanged, and was made
    from exactly ``inputs`` (a JSON dict)."""
    artifact = Path(artifact)
    record = stage_record_path(artifact)
    if not artifact.is_file() or not record.is_file() or not all(Path(c).is_file() for c in companions):
        return False
    try:
        data = json.loads(record.read_text())
    except ValueError:
        return False
    if not isinstance(data, dict) or data.get("format") != STAGE_FORMAT or data.get("inputs") != json.loads(json.dumps(inputs)):
        return False
    if data.get("companions", {}) != {Path(c).name: sha256_file(c) for c in companions}:
        return False
    return data.get("sha256") == sha256_file(artifact)


def record_stage(artifact, inputs, companions=()):
    """Write the stage record of a freshly made ``artifact`` (and the hashes of its companion files)."""
    record = {"format": STAGE_FORMAT, "inputs": inputs, "sha256": sha256_file(artifact)}
    if companions:
        record["companions"] = {Path(c).name: sha256_file(c) for c in companions}
    atomic_write_json(stage_record_path(artifact), record)


def candidate_graphs(stages, checkpoint, opset, names, if_cost_table=None, data=None, data_root=None):
    """{candidate: {"onnx", "reference", "inputs"}}: each selection candidate (conditional form, batch 1) exported
    with its policy (cosinegate.bench.candidates.POLICY) and checked against PyTorch following that policy."""
    from cosinegate.bench.candidates import POLICY

    out = {}
    for name in names:
        onnx_path = stages.export(checkpoint, "conditional", 1, opset, POLICY[name], name=None if name == "conditional" else name,
                                  if_cost_table=if_cost_table if name == "conditional" else None)
        tag = "" if name == "conditional" else f".{name}"
        reference, inputs = stages.reference(checkpoint, onnx_path, data, data_root, tag=tag)
        out[name] = {"onnx": onnx_path, "reference": reference, "inputs": inputs}
    return out


def reference_images(data=None, data_root=None, samples=300, checkpoint=None):
    """(batches of 1 image as float arrays, labels) of the first ``samples`` test images, at the
    checkpoint's image size and normalization (32x32 and CIFAR-10's without one)."""
    from cosinegate.data import load_dataset
    from cosinegate.data.augment import to_tensor
    from cosinegate.data.normalization import of_checkpoint
    from cosinegate.training.checkpoint import image_size_of, load_checkpoint

    state = load_checkpoint(checkpoint) if checkpoint else {"config": {"data": {}}}
    _, test = load_dataset(data or "synthetic", data_root, image_size=image_size_of(state))
    count = min(samples, len(test))
    if count == 0:
        raise CosineGateError("the reference set has no test images; check --data/--data-root.")
    x = to_tensor(test.images[:count], "cpu", of_checkpoint(state)).numpy()
    return [x[i : i + 1] for i in range(count)], test.labels[:count]
