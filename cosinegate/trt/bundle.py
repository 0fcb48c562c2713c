"""The device bundle: the build script for trtexec and the atomic bundle folder and archive.

A bundle ``<out>/<model>-bundle/`` (plus ``<model>-bundle.tar.gz``) holds everything a Jetson needs
to build and check the engine without PyTorch: the ONNX forms, Q/DQ graphs and calibration cache
when INT8, the reference inputs/outputs in Polygraphy JSON, the target profile, ``build_on_device.sh``
and ``manifest.json`` with the sha256 of every file. It is assembled in a temporary folder and
renamed into place at the end, so a failure leaves nothing half-written.
"""

import os
import shutil
import tarfile
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.trt.manifest import write_bundle_manifest
from cosinegate.trt.trtexec import shell_line, trtexec_command


def polygraphy_tolerance(precision):
    """`polygraphy run` tolerance flags of the precision's parity profile (gates always exact there;
    the profile's agreement thresholds are applied by `build_engine.py --bundle`)."""
    from cosinegate.parity import PROFILES

    profile = PROFILES[precision]
    atol, rtol = (min(v, 1e9) for v in (profile.logits_atol, profile.logits_rtol))
    return f"--atol logits:{atol:g} gates:0 --rtol logits:{rtol:g} gates:0"


POLYGRAPHY_PRECISION_FLAGS = {"fp32": "", "fp16": "--fp16 ", "int8": "--int8 "}


def device_script(profile, name, form, precision, int8_path, onnx_rel, calib_rel, batch, fp32_layers, workspace_mib=None,
                  dla_core=None, calibrator=None):
    """Text of build_on_device.sh: a trtexec line per TensorRT release of the target, and the python path."""
    from cosinegate.trt.versions import parse_version

    cc = profile.compute_capabilities[0] if len(profile.compute_capabilities) == 1 else "${CC}"
    lines = [
        "#!/bin/sh",
        f"# Build the {name} {form} {precision} engine for {profile.name} ({profile.description}) on the device.",
        "# Run from anywhere; paths are relative to this bundle. Check the bundle first:",
        "#   sha256sum of every file is in manifest.json (python deploy/build_engine.py --bundle checks them).",
        "set -e",
        'cd "$(dirname "$0")"',
        'BUNDLE="$(pwd)"',
        "TRT=$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || "
        "dpkg-query -W -f='${Version}' libnvinfer-bin 2>/dev/null | cut -d- -f1)",
        'echo "TensorRT: ${TRT:-unknown}"',
    ]
    minmax = calibrator == "minmax"
    if minmax:
        lines += [
            "# The calibration cache is MinMax: trtexec --calib always uses an EntropyCalibrator2 (and DLA needs",
            "# entropy2), so a MinMax cache cannot go through trtexec. Only the python path below applies; it uses",
            "# Polygraphy's Calibrator with BaseClass=trt.IInt8MinMaxCalibrator reading calibration.cache.",
        ]
    else:
        lines.append('case "$TRT" in')
        for release in reversed(profile.tensorrt):
            version = parse_version(release.version)
            engine = f"{name}-{form}-{precision}-trt{version}-sm{cc.replace('.', '')}.engine"
            try:
                args = trtexec_command(profile, onnx_rel, engine, precision, int8_path, calib_rel, dla_core, workspace_mib,
                                       "timing.cache", version, 1, fp32_layers if not version.requires_strongly_typed else ())
                body = "    " + shell_line(args)
            except CosineGateError as exc:
                body = f"    echo 'not possible with TensorRT {version}: {exc}' >&2; exit 2"
            jp = f" (JetPack {', '.join(release.jetpack)})" if release.jetpack else ""
            lines += [f"  {version}*)  # TensorRT {version}{jp}", body, "    ;;"]
        lines += ["  *)", f"    echo \"TensorRT $TRT is not a release of {profile.name} ({profile.tensorrt_names()})\" >&2; exit 2",
                  "    ;;", "esac"]
    flags = f"--target {profile.name} --precision {precision} --form {form} --batch {batch}"
    if precision == "int8":
        flags += f" --int8 {int8_path}"
    if dla_core is not None:
        flags += f" --dla-core {dla_core}"
    lines += [
        "",
        "# The same build through Polygraphy (writes the engine manifest and runs parity against reference.json);",
        "# run from a checkout of the CosineGate toolkit on the device (TOOLKIT defaults to ~/cosinegate):",
        f'{"" if minmax else "# "}python3 "${{TOOLKIT:-$HOME/cosinegate}}/deploy/build_engine.py" --bundle "$BUNDLE" {flags}',
        "",
        "# Parity without PyTorch (gate decisions exact; logits within the precision's tolerance):",
        f"#   polygraphy run {onnx_rel} --trt {POLYGRAPHY_PRECISION_FLAGS[precision]}--load-inputs inputs.json "
        f"--load-outputs reference.json {polygraphy_tolerance(precision)}",
    ]
    if precision != "fp32":
        lines.append(f"#   {precision} may flip a near-threshold gate, which this exact check reports; the --bundle command "
                     "above applies the profile's agreement thresholds instead.")
    return "\n".join(lines) + "\n"


def make_bundle(out_dir, name, profile, files, script, manifest_fields, log=print):
    """Assemble ``<out_dir>/<name>-bundle`` (+ .tar.gz) from ``files`` {bundle name: source path}.

    Both are built aside first. Then the old archive goes, the folder is swapped in whole, and the new
    archive comes last: after a kill at any step the folder is a whole bundle, and an archive beside
    it is always the same bundle (a missing archive says the last run did not finish).
    """
    from cosinegate.artifacts import publish_dir, staging_dir, write_error

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
        shutil.copy2(profile.source, staging / f"{profile.name}.toml")
        (staging / "build_on_device.sh").write_text(script)
        os.chmod(staging / "build_on_device.sh", 0o755)
        manifest = write_bundle_manifest(staging, **manifest_fields)
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
