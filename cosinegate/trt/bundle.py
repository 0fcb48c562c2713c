"""The device bundle: per-release calibration caches, SHA256SUMS, the reference input for trtexec, and the
atomic bundle folder and archive (the script itself: device_script.py; its README: bundle_readme.py).

A bundle ``<out>/<model>-bundle/`` (plus ``<model>-bundle.tar.gz``) holds everything a Jetson needs
to build and check the engine without PyTorch: the ONNX forms, Q/DQ graphs and calibration cache
when INT8, the reference images once at uint8 (``inputs.npz``; ``check_parity.py`` makes the float feeds) and the
PyTorch outputs on them (Polygraphy JSON), the target profile, ``build_on_device.sh``
and ``manifest.json`` with the sha256 of every file. It is assembled in a temporary folder and
renamed into place at the end, so a failure leaves nothing half-written.
"""

import os
import shutil
import tarfile
from dataclasses import replace
from pathlib import Path

from cosinegate.artifacts import publish_dir, staging_dir, write_error
from cosinegate.errors import CosineGateError
from cosinegate.trt.manifest import file_hashes, write_bundle_manifest
from cosinegate.trt.targets import load_target
from cosinegate.trtversion import calibration_cache_header, parse_calibration_cache_header, read_cache_text


def release_caches(cache_path, profile):
    """{release version: cache text} for every exact TensorRT release of ``profile`` (MAJOR.MINOR.PATCH).

    TensorRT skips a cache whose header names another release and calibrates again, silently. The
    scales do not depend on the release (cosinegate.quant writes the same ones for any --trt-version), so
    the bundle carries one copy per release with that release's header; prefix releases ("10") get none,
    and their cache branches refuse.
    """
    lines = read_cache_text(cache_path).splitlines()
    _, algorithm = parse_calibration_cache_header(lines[0])
    out = {}
    for release in profile.tensorrt:
        if release.version.is_exact:
            header = calibration_cache_header(release.version, algorithm)
            out[str(release.version)] = "\n".join([header] + lines[1:]) + "\n"
    return out


def release_cache_name(version):
    return f"calibration-trt{version}.cache"


def write_sha256sums(directory):
    """``SHA256SUMS`` in ``sha256sum -c`` format for every file of ``directory`` but itself."""
    directory = Path(directory)
    lines = [f"{digest}  {rel}" for rel, digest in file_hashes(directory, exclude=("SHA256SUMS",)).items()]
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def input_bin(feeds, out, name="input"):
    """The first of the reference ``feeds`` as raw float32 (trtexec --loadInputs=input:input.bin): one image's timing."""
    import numpy as np

    np.ascontiguousarray(feeds[0][name], dtype=np.float32).tofile(str(out))


PATTERNS = "timing/patterns.txt"


def gate_pattern_inputs(batches, gates, folder):
    """One raw float32 input per distinct gate pattern of ``batches`` (``gates``: [N, blocks], 1 = the block ran) in
    ``folder``, and the text of ``timing/patterns.txt`` (file, images, pattern per line, most frequent first).

    trtexec times one buffer (--loadInputs loads it once), and a conditional engine's latency depends on which
    blocks run, not on the pixels: timing one image per pattern, weighted by its image count, times the engine
    over all ``batches``. Returns ({bundle name: file}, text)."""
    import numpy as np

    first, counts = {}, {}
    for index, row in enumerate(np.asarray(gates) > 0.5):
        pattern = "".join("1" if ran else "0" for ran in np.ravel(row))
        first.setdefault(pattern, index)
        counts[pattern] = counts.get(pattern, 0) + 1
    files, lines = {}, []
    for k, pattern in enumerate(sorted(counts, key=lambda p: (-counts[p], first[p]))):
        rel = f"timing/pattern-{k:03d}.bin"
        path = Path(folder) / f"pattern-{k:03d}.bin"
        np.ascontiguousarray(batches[first[pattern]], dtype=np.float32).tofile(str(path))
        files[rel] = path
        lines.append(f"{rel} {counts[pattern]} {pattern}")
    return files, "\n".join(lines) + "\n"


def _same_profile(copy, profile):
    """Whether the profile file copied into a bundle still says what ``profile`` (read before) says."""
    try:
        return replace(load_target(profile.name, copy.parent), source=profile.source) == profile
    except CosineGateError:
        return False


def make_bundle(out_dir, name, profile, files, script, manifest, texts=None):
    """Assemble ``<out_dir>/<name>-bundle`` (+ .tar.gz) from ``files`` {bundle name: source path} and ``texts``
    {bundle name: text} (README, per-release caches); ``manifest.json`` (``manifest``, a BundleManifest, with the
    files' hashes) and ``SHA256SUMS`` last. Returns (folder, archive, the BundleManifest written).

    Both are built aside first. Then the old archive goes, the folder is swapped in whole, and the new
    archive comes last: after a kill at any step the folder is a whole bundle, and an archive beside
    it is always the same bundle (a missing archive says the last run did not finish).
    """
    out_dir = Path(out_dir)
    final = out_dir / f"{name}-bundle"
    archive = out_dir / f"{name}-bundle.tar.gz"
    tmp = staging_dir(final)
    try:
        staging = tmp / final.name
        staging.mkdir()
        for rel, source in files.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / rel)
        for rel, text in (texts or {}).items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_text(text)
        shutil.copy2(profile.source, staging / f"{profile.name}.toml")
        if not _same_profile(staging / f"{profile.name}.toml", profile):
            raise CosineGateError(f"{profile.source} changed since it was read; run the command again.")
        (staging / "build_on_device.sh").write_text(script)
        os.chmod(staging / "build_on_device.sh", 0o755)
        manifest = write_bundle_manifest(staging, manifest)
        write_sha256sums(staging)
        tmp_archive = tmp / archive.name
        with tarfile.open(tmp_archive, "w:gz") as tar:
            tar.add(staging, arcname=final.name)
        if archive.exists():
            os.remove(archive)
        publish_dir(staging, final)
        os.replace(tmp_archive, archive)
    except OSError as exc:
        raise write_error(final, exc) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final, archive, manifest
