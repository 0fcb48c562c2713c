"""The pipeline stages (export, calibration, reference) run in a work folder, reused by input hash.

Each stage artifact gets a ``<file>.stage.json`` beside it (a cosinegate.manifests.StageRecord) holding the
hashes of its inputs and of the file itself; ``reusable`` says whether a stage can be skipped (same inputs,
file unchanged).
"""

import json
import re
from pathlib import Path

from cosinegate.artifacts import atomic_write_json, not_writable_file, read_json, sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.manifests import StageRecord
from cosinegate.progress import detail

REFERENCE_SAMPLES = 256  # enough test images for every dynamic gate to be seen both ways


FILE_TAGS = {"conditional", "masked", "compact", "flat", "int8", "qdq", "fp16", "fp32"}  # model.<tag>.onnx and the like


def model_name(path):
    """The model's name for output files: its run folder's (best.pt/last.pt) or file's name without the toolkit's
    form/precision tags (model.conditional.onnx: model; rates-r0.55-s0.pt stays whole), as a plain name (anything but
    letters, digits, '.', '_', '+', '-' becomes '_'), so no path or shell text reaches a file name."""
    path = Path(path)
    name = path.parent.name if path.stem in ("best", "last") and path.parent.name else path.stem
    while "." in name and name.rsplit(".", 1)[1].lower() in FILE_TAGS:
        name = name.rsplit(".", 1)[0]
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
        detail(self.log, f"making {artifact} ({'inputs changed' if stage_record_path(artifact).is_file() else 'not made before'})")
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

    def calibrate(self, checkpoint, data, form="conditional"):
        """INT8 calibration output dir (model.qdq*.onnx incl. the Q/DQ graph of ``form``, calibration.cache,
        manifest.json), calibrated on the train split of ``data`` (a cosinegate.data.choice.DataChoice)."""
        out = self.workdir / "calibration"
        marker = out / "manifest.json"
        forms = calibration_forms(form)
        inputs = {"stage": "calibrate", "checkpoint_sha256": sha256_file(checkpoint), "data": data_key(data),
                  "forms": list(forms)}
        self._stage(marker, inputs, lambda: run_calibration(checkpoint, out, data, forms, self.log))
        return out

    def reference(self, checkpoint, onnx_path, data, samples=REFERENCE_SAMPLES, tag=""):
        """inputs<tag>.npz (the uint8 images, check_parity.py's format) / reference<tag>.json (Polygraphy RunResults of
        PyTorch on the float feeds check_parity.py makes from them) on the test split of ``data`` (a
        cosinegate.data.choice.DataChoice), via cosinegate parity's machinery, and reference<tag>.report.json
        (its parity report, decision counts included)."""
        out = self.workdir / f"reference{tag}.json"
        inputs_json = self.workdir / f"inputs{tag}.npz"
        report_json = self.workdir / f"reference{tag}.report.json"
        stage_inputs = {"stage": "reference", "checkpoint_sha256": sha256_file(checkpoint),
                        "onnx_sha256": sha256_file(onnx_path), "data": data_key(data), "samples": samples,
                        "inputs": "npz-uint8"}

        def make():
            report = run_reference(checkpoint, onnx_path, out, inputs_json, data, samples, log=self.log)
            if not report["passed"]:
                raise CosineGateError(f"parity of the exported graph failed before bundling: {report['summary']}")
            atomic_write_json(report_json, report)

        self._stage(out, stage_inputs, make, companions=(inputs_json, report_json))
        return out, inputs_json, read_json(report_json, "reference report")


def data_key(data):
    """What identifies a data choice in a stage record."""
    return {"source": data.source, "root": None if data.root is None else str(data.root)}


def calibration_forms(form):
    """Q/DQ forms to calibrate for a build of ``form``: the flat twin and the form itself."""
    return ("flat",) if form == "flat" else ("flat", form)


def reference_subset(test, samples):
    """A class-balanced, deterministic sample of ``samples`` test images (all of them when the split is smaller)."""
    from cosinegate.data import balanced_subset

    return test if samples >= len(test) else balanced_subset(test, samples)


def decision_counts(report, kinds):
    """Per block: its kind and how many reference images run / skip it; dynamic blocks seen only one way."""
    ran, total = report["decisions"]["ran"], report["num_samples"]
    blocks = [{"block": i, "kind": kind, "ran": int(r), "skipped": int(total - r)} for i, (kind, r) in enumerate(zip(kinds, ran))]
    one_way = [b["block"] for b in blocks if b["kind"] in ("dynamic", "gated") and (b["ran"] == 0 or b["skipped"] == 0)]
    return {"images": total, "blocks": blocks, "dynamic_blocks_seen_one_way": one_way}


def parity_profile(precision):
    """The precision's parity profile as JSON (null: no bound), for the bundle's check_parity.py."""
    from cosinegate.parity import PROFILES

    return PROFILES[precision].profile()


def run_reference(checkpoint, onnx_path, reference, inputs_npz, data, samples=REFERENCE_SAMPLES, backend="onnxrt", log=None):
    """The parity report of ``onnx_path`` against ``checkpoint`` on the reference images of ``data``; PyTorch's outputs
    saved to ``reference`` and the uint8 images to ``inputs_npz`` (each when given); ``log``: for the progress bar."""
    from cosinegate.onnx import load_toolkit_onnx
    from cosinegate.parity import FP32, run_parity
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint)
    graph = load_toolkit_onnx(onnx_path)
    images = reference_subset(data.test, samples)
    report = run_parity(model, graph, str(onnx_path), images, backend, samples, FP32, None,
                        str(reference) if reference else None, save_images=str(inputs_npz) if inputs_npz else None, log=log)
    report["data"] = data.record()
    return report


def run_calibration(checkpoint, out, data, forms, log=None):
    """Calibrate on the train split of ``data`` and write the outputs to ``out``."""
    from cosinegate.quant.calibrate import calibrate, write_outputs
    from cosinegate.quant.calibset import DEFAULT_COUNT, select

    count = min(DEFAULT_COUNT, len(data.train))
    calib_set = select(data.train, count, source=data.source, root=None if data.root is None else str(data.root))
    write_outputs(calibrate(checkpoint, calib_set, forms=forms, log=log), out)


def calibration_files(calib_dir, form, checkpoint=None):
    """(Q/DQ graph for ``form`` or None, calibration cache or None) from a calibration output dir, each checked
    against the hash its manifest holds (a folder mixed by hand or by a copy is refused), and the folder's
    checkpoint against ``checkpoint`` when given."""
    from cosinegate.quant.names import CACHE_NAME, FILE_BY_FORM, MANIFEST_NAME

    calib_dir = Path(calib_dir)
    rerun = f"rerun cosinegate calibrate --out {calib_dir}"
    if not (calib_dir / MANIFEST_NAME).is_file():
        raise CosineGateError(f"calibration {calib_dir} has no {MANIFEST_NAME}, so its files cannot be checked; {rerun}.")
    qdq, cache = calib_dir / FILE_BY_FORM[form], calib_dir / CACHE_NAME
    for path in (calib_dir / MANIFEST_NAME, qdq, cache):  # read, and copied into bundles: the folder's own files only
        problem = not_writable_file(path)
        if problem:
            raise CosineGateError(f"calibration {calib_dir}: {path.name} {problem.split(' (')[0]}; a calibration folder "
                                  f"holds the files calibrate wrote; {rerun}.")
    manifest = read_json(calib_dir / MANIFEST_NAME, "calibration manifest")
    hashes, cache_entry = manifest.get("onnx_sha256") or {}, manifest.get("cache") or {}
    if not (isinstance(hashes, dict) and isinstance(cache_entry, dict)):
        raise CosineGateError(f"calibration {calib_dir}: its {MANIFEST_NAME} is not one calibrate writes (onnx_sha256 and "
                              f"cache are not mappings); {rerun}.")
    claimed = manifest.get("checkpoint_sha256")
    if checkpoint is not None and claimed != sha256_file(checkpoint):
        raise CosineGateError(f"calibration {calib_dir} was made from another checkpoint (sha256 {str(claimed)[:16]}...), not "
                              f"{checkpoint}; calibrate this checkpoint or drop --calibration.")
    expected = {qdq.name: hashes.get(qdq.name), cache.name: cache_entry.get("sha256")}
    for path in (qdq, cache):
        actual = sha256_file(path) if path.is_file() else expected[path.name]
        if actual != expected[path.name]:
            raise CosineGateError(f"calibration {calib_dir}: {path.name} is not the file its {MANIFEST_NAME} names (sha256 "
                                  f"{actual[:16]}..., manifest {str(expected[path.name])[:16]}...): the folder was "
                                  f"changed or mixed after calibration; {rerun}.")
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
        data = StageRecord.from_json(json.loads(record.read_text()), record)
    except (ValueError, TypeError, RecursionError, CosineGateError):  # unreadable or another schema: made again
        return False
    if data.inputs != json.loads(json.dumps(inputs)):
        return False
    if (data.companions or {}) != {Path(c).name: sha256_file(c) for c in companions}:
        return False
    return data.sha256 == sha256_file(artifact)


def record_stage(artifact, inputs, companions=()):
    """Write the stage record of a freshly made ``artifact`` (and the hashes of its companion files)."""
    record = StageRecord(inputs, sha256_file(artifact), {Path(c).name: sha256_file(c) for c in companions} or None)
    atomic_write_json(stage_record_path(artifact), record.to_json())


def candidate_graphs(stages, checkpoint, opset, names, data):
    """{candidate: {"onnx", "reference", "inputs"}}: each selection candidate (conditional form, batch 1) exported
    with its policy (cosinegate.bench.candidates.POLICY) and checked against PyTorch following that policy."""
    from cosinegate.bench.candidates import POLICY

    out = {}
    for name in names:
        onnx_path = stages.export(checkpoint, "conditional", 1, opset, POLICY[name], name=None if name == "conditional" else name)
        tag = "" if name == "conditional" else f".{name}"
        reference, inputs, _ = stages.reference(checkpoint, onnx_path, data, tag=tag)
        out[name] = {"onnx": onnx_path, "reference": reference, "inputs": inputs}
    return out


def reference_images(data, samples=300, checkpoint=None):
    """(batches of 1 image as float arrays, labels) of ``samples`` class-balanced test images of ``data`` (a
    DataChoice, at the checkpoint's image size; reference_subset: an image folder lists its classes in order, so
    the first N images could be one class), with the checkpoint's normalization (CIFAR-10's without one), made as
    the device bundle makes its feeds (cosinegate.parity.device_check.float_feeds)."""
    from cosinegate.data.normalization import of_checkpoint
    from cosinegate.graphmeta import INPUT
    from cosinegate.parity.device_check import float_feeds
    from cosinegate.training.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint) if checkpoint else {"config": {"data": {}}}
    if len(data.test) == 0 or samples < 1:
        raise CosineGateError("the reference set has no test images; check --data/--data-root.")
    test = reference_subset(data.test, samples)
    norm = of_checkpoint(state)
    return [feed[INPUT] for feed in float_feeds(test.images, norm["mean"], norm["std"])], test.labels


def work_folder(out, name):
    """The work cache of ``name``'s stages (exports, references, calibration), reused by input hash."""
    return Path(out) / ".work" / name


def finish_work(out, clean, name, log=print):
    """After a successful run into ``out``: with ``clean`` remove the work cache, else say where it is and what it
    holds."""
    import contextlib
    import shutil

    work = work_folder(out, name)
    if not work.is_dir():
        return
    size = sum(f.stat().st_size for f in work.rglob("*") if f.is_file() and not f.is_symlink())
    if not clean:
        log(f"work cache: {work} ({size / 1e6:.1f} MB: exported graphs incl. the flat twin, references, calibration; "
            "kept for the next run; --clean-work removes it)")
        return
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.parent.rmdir()  # .work itself, when no other model's cache is left in it
    log(f"work cache {work} removed (--clean-work; {size / 1e6:.1f} MB freed; the next run exports and checks again)")
