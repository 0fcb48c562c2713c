"""Does a graph belong to a checkpoint? Checked from hashes before any comparison runs."""

from pathlib import Path

from cosinegate.artifacts import read_json, sha256_file
from cosinegate.errors import CosineGateError
from cosinegate.schema import is_sha256


def claimed_checkpoint(onnx_path, meta):
    """(sha256 of the checkpoint the graph says it came from, where that claim was read), or (None, None).

    Read from the graph's own metadata; for older exports from its `<onnx>.json` manifest or a
    calibration manifest.json beside it, when that manifest names this graph's hash.
    """
    if meta.get("checkpoint_sha256"):
        return meta["checkpoint_sha256"], "ONNX metadata"
    onnx_path = Path(onnx_path)
    graph_sha = sha256_file(onnx_path)
    for manifest in (Path(f"{onnx_path}.json"), onnx_path.with_name("manifest.json")):
        if not manifest.is_file():
            continue
        try:
            data = read_json(manifest, "manifest")
        except CosineGateError:
            continue
        hashes = data.get("onnx_sha256")
        names = hashes.values() if isinstance(hashes, dict) else [hashes]
        if graph_sha in names and is_sha256(data.get("checkpoint_sha256")):  # a claim of another shape is none
            return data["checkpoint_sha256"], str(manifest)
    return None, None


def check_provenance(checkpoint, onnx_path, meta):
    """Refuse a graph exported from another checkpoint; return a record for the report."""
    claimed, where = claimed_checkpoint(onnx_path, meta)
    actual = sha256_file(checkpoint)
    if claimed is not None and claimed != actual:
        raise CosineGateError(
            f"{onnx_path} was exported from another checkpoint (sha256 {claimed[:16]}..., per its {where}), not from "
            f"{checkpoint} (sha256 {actual[:16]}...); pass the checkpoint it came from, or export it again from this one."
        )
    return {"checkpoint_sha256": actual, "onnx_claims": claimed, "claim_source": where,
            "verified": claimed is not None}
