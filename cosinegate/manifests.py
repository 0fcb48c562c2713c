"""The records the toolkit writes beside its artifacts: stage records, bundle manifests, engine manifests.

Each is a dataclass with ``to_json`` / ``from_json``. On disk a record holds its ``format`` (what it is) and
``schema_version`` (how it is laid out); a file without ``schema_version`` is version 1, and a version this
toolkit does not know is refused in one line. Python 3.8 and the standard library only (the board reads them).
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from cosinegate.errors import CosineGateError

SCHEMA_VERSION = 1
STAGE_FORMAT = "cosinegate-stage-v1"
BUNDLE_FORMAT = "cosinegate-bundle-v1"
ENGINE_FORMAT = "cosinegate-engine-v1"
ORT_ENGINE_FORMAT = "cosinegate-ort-engine-v1"


def header(fmt):
    """The fields every record of ``fmt`` starts with."""
    return {"format": fmt, "schema_version": SCHEMA_VERSION}


def check_schema(data, fmt, what, where, fix):
    """Refuse ``data`` unless it is a ``fmt`` record (``what``) of a schema version this toolkit reads (absent: 1)."""
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CosineGateError(f"{where} is not a CosineGate {what}; {fix}.")
    version = data.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        raise CosineGateError(f"{where} has schema version {json.dumps(version)[:20]}, this toolkit reads version "
                              f"{SCHEMA_VERSION}; {fix}.")


class Record:
    """JSON round trip of a record dataclass: ``FORMAT`` first, fields in ``OMIT_NONE`` left out while unset."""

    FORMAT = WHAT = FIX = ""
    OMIT_NONE = ()

    def to_json(self):
        body = {k: v for k, v in asdict(self).items() if not (k in self.OMIT_NONE and v is None)}
        return {**header(self.FORMAT), **body}

    @classmethod
    def from_json(cls, data, where):
        """The record in ``data`` (read from ``where``); fields it does not know are left out."""
        check_schema(data, cls.FORMAT, cls.WHAT, where, cls.FIX)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class StageRecord(Record):
    """``<artifact>.stage.json``: the inputs a stage artifact was made from and its hash (and its companions')."""

    FORMAT, WHAT = STAGE_FORMAT, "stage record"
    FIX = "delete it and rerun (the stage is made again)"
    OMIT_NONE = ("companions",)

    inputs: dict
    sha256: str
    companions: Optional[dict] = None


@dataclass
class BundleManifest(Record):
    """A device bundle's ``manifest.json``: how to build the engine there, and the sha256 of every file."""

    FORMAT, WHAT = BUNDLE_FORMAT, "bundle manifest"
    FIX = "re-create the bundle"
    OMIT_NONE = ("candidates", "selection", "calibration_cache", "preprocessing")

    model: object = None
    target: object = None
    form: object = None
    precision: object = None
    batch: object = None
    int8_path: object = None
    build_onnx: object = None
    float_onnx: object = None
    calibration_caches: object = None  # {TensorRT release: cache file}
    calibration_cache: object = None  # one cache for every release (bundles that carry no per-release copies)
    calibrator: object = None
    dla_core: object = None
    int8: object = None  # what INT8 means in this bundle, per release
    source: object = None
    source_sha256: object = None
    data: object = None
    reference: object = None  # decision counts of the reference images
    card: object = None
    parity_profile: object = None
    int8_preview_onnxrt: object = None
    timing: object = None
    candidates: object = None  # {candidate: {"onnx", "reference", "inputs", "kinds"}} with --select
    selection: object = None
    preprocessing: object = None  # image file -> input (card "preprocessing"; run_engine.py reads it); absent before
    files: dict = field(default_factory=dict)  # {relative path: sha256}


@dataclass
class EngineManifest(Record):
    """``<engine>.json``: what an engine was built from, for which TensorRT and GPU, and its hash."""

    FORMAT, WHAT = ENGINE_FORMAT, "engine manifest"
    FIX = "rebuild the engine with cosinegate build-engine"
    OMIT_NONE = ("selection", "built_by", "preprocessing", "power_rails")

    engine_sha256: object = None
    model: object = None
    target: object = None
    trt_version: object = None
    compute_capability: object = None
    precision: object = None
    batch: object = None
    form: object = None
    build_seconds: object = None
    settings: object = None
    inputs: object = None  # {"onnx", "onnx_sha256"}
    calibration_sha256: object = None  # the calibration cache the build read
    gate_thresholds: object = None
    onnx_metadata: object = None
    card: object = None
    reference_inputs: object = None
    built_by: object = None
    selection: object = None
    preprocessing: object = None  # image file -> input (card "preprocessing"); absent in engines built before it
    power_rails: object = None  # {"total": [rail], "detail": [rail]}: the target profile's tegrastats rails, read by
    # bench --power (the profile may be a local file the board never sees); absent in engines built before them


@dataclass
class OrtEngineManifest(Record):
    """``<graph>.onnx.json``: an ONNX Runtime-native graph built for the cpu-onnxruntime target, the ONNX Runtime
    version and CPU that optimized it (it runs only there), its layout, what it was made from and its hash."""

    FORMAT, WHAT = ORT_ENGINE_FORMAT, "ONNX Runtime engine manifest"
    FIX = "rebuild it with cosinegate build-engine --target cpu-onnxruntime"
    OMIT_NONE = ("selection", "parity")

    engine_sha256: object = None
    model: object = None
    target: object = None
    candidate: object = None  # conditional | pruned | dense
    onnxruntime_version: object = None
    cpu: object = None  # {"machine", "model", "isa"} (cosinegate.runtime.ort_engine.cpu_identity)
    layout: object = None  # nchwc | nchw
    precision: object = None
    batch: object = None
    form: object = None
    build_seconds: object = None
    inputs: object = None  # {"checkpoint", "checkpoint_sha256", "onnx", "onnx_sha256"}
    onnx_metadata: object = None
    reference_inputs: object = None
    parity: object = None  # {"passed", "summary"}
    selection: object = None


def engine_manifest_path(engine):
    return Path(f"{engine}.json")
