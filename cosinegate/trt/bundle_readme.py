"""README.md of a device bundle: what the board needs per JetPack release, and the steps."""

from cosinegate.trtversion import JETPACKS

def preview_failure(preview):
    """One line saying the INT8 preview on ONNX Runtime failed (``preview``: the manifest's int8_preview_onnxrt
    record), with its numbers and where the advice is; None when it passed, could not run or was not made. The
    bundle README's banner, build_on_device.sh's first message and build-engine's last line."""
    if not isinstance(preview, dict) or preview.get("passed") is not False:
        return None
    try:
        numbers = (f"top-1 agreement {float(preview['top1_agreement']):.4f}, gate agreement "
                   f"{float(preview['gate_agreement']):.4f} on {int(preview['num_samples'])} reference images")
    except (KeyError, TypeError, ValueError):
        numbers = "agreement below the int8 profile"
    best = (preview.get("advice") or {}).get("best") if isinstance(preview.get("advice"), dict) else None
    advice = (f"the advice in manifest.json (int8_preview_onnxrt.advice: {best} passes there)" if best else
              "the advice in manifest.json (int8_preview_onnxrt), or build fp16 (--precision fp16)")
    return (f"INT8 preview FAILED on ONNX Runtime ({numbers}, {preview.get('graph') or 'the Q/DQ graph'}): the engine "
            f"will most likely fail its INT8 check; rebuild with {advice}.")


def bundle_readme(profile, name, graph, precision, int8_note, archive_name, build_onnx, int8_path=None,
                  int8_preview=None):
    """Markdown text for the bundle of ``name``'s ``graph`` (its form, or the candidate selected: pruned, dense) on
    ``profile`` (``archive_name``: ``<bundle folder>.tar.gz``);
    ``int8_preview``: the manifest's int8_preview_onnxrt record (a failed one puts a banner on top); ``build_onnx``
    and ``int8_path``: the graph the engine is built from (bundle-relative) and how INT8 gets its scales."""
    folder = archive_name[: -len(".tar.gz")] if archive_name.endswith(".tar.gz") else f"{name}-bundle"
    onnx_note = "the graph the engine was built from, on ONNX Runtime"
    if precision == "int8" and int8_path != "qdq":  # built from the float graph and a calibration cache
        onnx_note += " (in float: the INT8 engine follows it within the int8 profile)"
    failed = preview_failure(int8_preview)
    lines = [
        f"# {name}: {graph} {precision} engine for {profile.name}",
        "",
    ]
    if failed:
        lines += [f"> **Warning: {failed}**", ""]
    lines += [
        f"{profile.description}. Built on the board from this bundle; PyTorch is not needed there.",
        "",
        "## What the board needs",
        "",
    ]
    if profile.is_jetson:
        lines += ["| JetPack | ships | Python | OS |", "|---|---|---|---|"]
        for release in profile.tensorrt:
            for jetpack in release.jetpack:
                ships = JETPACKS.get(jetpack)
                trt, python, os_name = (f"TensorRT {ships.tensorrt}", f"Python {ships.python}", f"Ubuntu {ships.ubuntu}") \
                    if ships else (f"TensorRT {release.version}", "system Python 3", "")
                lines.append(f"| {jetpack} | {trt} | {python} | {os_name} |")
        lines += [
            "",
            "- trtexec comes with JetPack (`sudo apt install nvidia-jetpack`, or `sudo apt install tensorrt`) in",
            "  `/usr/src/tensorrt/bin/trtexec`; the script also finds it on PATH or in `$TRTEXEC`.",
            "- For the engine check and `run_engine.py` (optional, recommended): `sudo apt install python3-pip &&",
            "  pip3 install 'numpy<1.24' polygraphy` (Polygraphy does not bring numpy; below 1.24 for TensorRT 8.5.2's",
            "  `np.bool`; `pip3 install pillow` to run the engine on image files, or JetPack's OpenCV),",
            "  then `export PATH=\"$HOME/.local/bin:$PATH\"` (pip puts the `polygraphy` command there, on PATH only",
            "  after the next login; the script looks there too).",
            "- For `bench.py --engine` and the Python build path: the system Python's TensorRT (`python3-libnvinfer`,",
            "  part of JetPack), `pip3 install pycuda` (with `/usr/local/cuda/bin` on PATH), and the toolkit's device",
            "  extra from a checkout: `pip3 install -e '.[device]'` (numpy, onnx, polygraphy; no torch; Ubuntu 20.04's",
            "  pip 20.0.2 installs it through the checkout's setup.py).",
        ]
    else:
        lines += [
            f"- TensorRT {profile.tensorrt_names()} with trtexec (on PATH, in `/usr/src/tensorrt/bin`, or `$TRTEXEC`),",
            "  `nvidia-smi` (the script reads the GPU's compute capability; or set `CC=8.9`).",
            "- Optional: `pip install numpy polygraphy` (engine check), `pip install pillow` (run_engine.py on images), the",
            "  toolkit's device extra `pip install -e '.[device]'`.",
        ]
    lines += [
        "",
        "## Steps",
        "",
        "```sh",
        f"tar xzf {archive_name}",
        f"sh {folder}/build_on_device.sh",
        "```",
        "",
        "The script checks `SHA256SUMS`, picks the trtexec line of the installed TensorRT, builds with the",
        "verbose log, writes the engine's manifest (`<engine>.json`), checks the engine against the PyTorch",
        "reference with Polygraphy where installed, times it with trtexec (a conditional engine once per gate pattern",
        "of the timing images, `timing/patterns.txt`, weighted by their images: `results/latency.txt`), lists gate",
        "layers the engine runs below FP32 (`results/gate_precision.txt`), records `nvpmodel -q` and the",
        "`jetson_clocks` state, and prints the command that brings `results/` back (`scp -r`, or `ssh ... tar` for a",
        "path with spaces). Exit status: 2 when it could not build (a damaged bundle, no trtexec, another release or GPU),",
        "1 when the check of the engine `run_engine.py` uses failed or could not run, else 0.",
        "",
        "The reference images travel once, as uint8: `inputs.npz` (NHWC images, the model's mean/std, batch).",
        "`check_parity.py` is also Polygraphy's data loader: it makes the float feeds with numpy, by the same code",
        "the desktop fed PyTorch when it wrote `reference.json`, so the check compares like with like (from inside",
        "the bundle; a selected candidate's engine is judged with `--reference reference.<candidate>.json`):",
        "",
        "```sh",
        f"(cd {folder} && polygraphy run results/<engine>.engine --trt --model-type engine \\",
        "    --data-loader-script check_parity.py --save-outputs results/outputs.json &&",
        "    python3 check_parity.py results/outputs.json)",
        "```",
        "",
        "Then, from the toolkit's checkout with the device extra installed, with BUNDLE the path of this folder:",
        "`python3 deploy/bench.py --engine BUNDLE/results/<engine>.engine --inputs BUNDLE/inputs.npz` (the reference",
        "images; no dataset needed).",
        "",
        "## Run the engine",
        "",
        "```sh",
        f"python3 {folder}/run_engine.py photos/            # or image files, or .npy arrays",
        f"python3 {folder}/run_engine.py --onnx {folder}/{build_onnx} photos/   # {onnx_note}",
        "```",
        "",
        "Prints per image the label (`labels.txt`), its score and the blocks that ran, then the mean executed MACs of the graph that ran",
        "and the saving against the dense network. It preprocesses as training did (`preprocessing` in",
        "`manifest.json`, `resize`: `native`, an image of the input size as it is, any other resized on its shorter",
        "side and center-cropped; `eval`, the training images' sizes were mixed, so every image is resized and",
        "center-cropped, those of the input size too; RGB, /255, the checkpoint's mean/std, NCHW float32). Needs TensorRT's Python package",
        "(JetPack's `python3-libnvinfer`), numpy, the CUDA runtime `libcudart.so` (JetPack's CUDA; no pycuda) and",
        "Pillow (`pip3 install pillow`; JetPack's OpenCV also works, with a slightly different resize). It takes",
        "the engine in `results/` (the winner when there are several) or `--engine FILE`.",
    ]
    if int8_note:
        lines += ["", "## INT8", "", int8_note]
    return "\n".join(lines) + "\n"
