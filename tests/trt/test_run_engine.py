"""The bundle's run_engine.py: images -> label, score, blocks run, executed MACs.

The ONNX Runtime path (--onnx) is run as the board would run the file (a subprocess, from the unpacked bundle) and
compared exactly with the toolkit's own path on the same image files (imagefolder's decoder, resize.fit, to_input,
OnnxrtBackend). A stand-in TensorRT and CUDA drive the TensorRT path's plumbing only (copies, batching, API names
against each release's bindings): never evidence that an engine runs; that needs a board.
"""

import ast
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

from cosinegate.trt import build as trt_build
from cosinegate.trt.manifest import verify_bundle
from cosinegate.trt.targets import HostInfo

BUNDLE = "balanced-resnet20-conditional-fp16-bundle"
TRT_API = ROOT / "tests" / "data" / "trt_api"


@pytest.fixture(scope="module")
def default_bundle(dyn_checkpoint, tmp_path_factory):
    """The embedded default model's bundle (its checkpoint: the tiny one with dynamic gates), --select conditional."""
    import cosinegate.cli.build_engine as build_engine
    from cosinegate import defaults

    tmp = tmp_path_factory.mktemp("run_engine")
    run = tmp / "runs" / "pipeline" / "balanced-resnet20"
    run.mkdir(parents=True)
    shutil.copy(dyn_checkpoint, run / "best.pt")
    mp = pytest.MonkeyPatch()
    mp.setattr(defaults, "DEFAULT_RUN", run)
    mp.setattr(trt_build, "detect_host", lambda: HostInfo("x86_64", None, None))
    try:
        assert build_engine.main(["--target", "jetson-orin", "--select", "conditional", "--out", str(tmp / "engines")]) == 0
    finally:
        mp.undo()
    return tmp / "engines" / BUNDLE


@pytest.fixture(scope="module")
def photos(test_images, tmp_path_factory):
    """Image files of the test split: 32x32 PNGs (native), larger and non-square ones (resized and cropped), a
    grayscale one, and a .npy stack of uint8 images."""
    folder = tmp_path_factory.mktemp("photos")
    images = test_images.images
    for i in range(12):
        Image.fromarray(images[i]).save(folder / f"a{i:02d}.png")
    for i in range(12, 16):
        Image.fromarray(images[i]).resize((48 + i, 40), Image.BILINEAR).save(folder / f"b{i:02d}.png")
    Image.fromarray(images[16]).convert("L").save(folder / "c16.png")
    np.save(folder / "d.npy", images[17:20])
    return folder


def run_script(script, *args, python=sys.executable):
    return subprocess.run([str(python), str(script), *map(str, args)], capture_output=True, text=True, timeout=300)


def toolkit_rows(bundle, folder):
    """{file: (label index, gates)} by the toolkit's own decoder, resize rule, normalization and ONNX Runtime runner."""
    from cosinegate.bench.backends import OnnxrtBackend
    from cosinegate.data import resize
    from cosinegate.data.imagefolder import _open_rgb
    from cosinegate.graphmeta import get_metadata
    from cosinegate.quant.calibset import to_input

    import onnx

    graph = bundle / "model.conditional.onnx"
    norm = get_metadata(onnx.load(str(graph)))["normalization"]
    backend = OnnxrtBackend(graph)
    arrays = {}
    for path in sorted(folder.glob("*.png")):
        image = _open_rgb(path)
        arrays[str(path)] = resize.fit(image, 32, "native" if image.size == (32, 32) else "eval")
    for i, a in enumerate(np.load(folder / "d.npy")):
        arrays[f"{folder / 'd.npy'}[{i}]"] = a
    out = {}
    for name, array in arrays.items():
        outputs = backend.run(to_input(array[None], norm))[0]
        out[name] = (int(np.argmax(outputs["logits"][0])), [int(g > 0.5) for g in outputs["gates"][0]])
    return out


def test_bundle_carries_run_engine_and_the_preprocessing_rule(default_bundle):
    manifest = verify_bundle(default_bundle)
    assert "run_engine.py" in manifest.files and "labels.txt" in manifest.files
    pre = manifest.preprocessing
    assert pre["resize"] == "native" and pre["crop"] == [32, 32] and pre["resize_shorter_side"] == 37  # synthetic data
    assert pre["layout"] == "NCHW" and pre["dtype"] == "float32" and pre["mean"] == manifest.card["normalization"]["mean"]
    macs = manifest.card["macs"]
    assert len(macs["blocks"]) == 9 and macs["dense"] == 40551040  # ResNet-20 at 32x32 (cosinegate/macs.py)


def test_run_engine_imports_nothing_from_the_toolkit():
    from cosinegate.trt import run_engine

    tree = ast.parse(open(run_engine.__file__).read())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "cosinegate" not in names
    assert names <= {"argparse", "ctypes", "io", "json", "math", "os", "sys", "pathlib", "numpy", "PIL", "cv2", "onnxruntime",
                     "tensorrt", "re", "stat", "tempfile", "platform", "hashlib"}


def test_run_engine_bounds_image_sides_as_the_toolkit():
    from cosinegate import schema
    from cosinegate.trt import run_engine

    assert (run_engine.MIN_IMAGE_SIZE, run_engine.MAX_IMAGE_SIZE) == (schema.MIN_IMAGE_SIZE, schema.MAX_IMAGE_SIZE)


def test_onnx_path_matches_the_toolkit_exactly(default_bundle, photos, tmp_path):
    report = tmp_path / "report.json"
    done = run_script(default_bundle / "run_engine.py", "--onnx", default_bundle / "model.conditional.onnx", photos,
                      "--json", report)
    assert done.returncode == 0, done.stderr
    rows = json.loads(report.read_text())["images"]
    expected = toolkit_rows(default_bundle, photos)
    assert [r["file"] for r in rows] == sorted(expected)
    assert {r["file"]: (r["index"], r["gates"]) for r in rows} == expected
    patterns = {tuple(g) for _, g in expected.values()}
    assert len(patterns) > 1, "the images take one gate pattern only: the test would not see a wrong gate"
    labels = (default_bundle / "labels.txt").read_text().splitlines()
    assert all(r["label"] == labels[r["index"]] for r in rows)
    # executed MACs: the toolkit's MacTable of the graph (its fixed blocks lost their gate heads), per image, and the
    # mean against the checkpoint's dense backbone
    from cosinegate.bench.graphs import graph_info
    from cosinegate.macs import mac_table
    from cosinegate.training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(default_bundle.parents[1] / "runs" / "pipeline" / "balanced-resnet20" / "best.pt")
    _, table, kinds = graph_info(default_bundle / "model.conditional.onnx")[:3]
    assert {"always_run", "dynamic"} <= set(kinds), "no fixed block: the test would not see its gate head counted"
    assert [r["macs"] for r in rows] == [table.executed(r["gates"]) for r in rows]
    dense = mac_table(model.backbone, "none", model.num_classes, image_size=32).dense
    mean = np.mean([r["macs"] for r in rows])
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{len(rows)} images: mean executed MACs") and f"({100 * (1 - mean / dense):.1f}% saved)" in last
    first = done.stdout.splitlines()[0].split()
    assert first[1] == rows[0]["label"] and first[4] == f"{sum(rows[0]['gates'])}/9"


def bad_cases(bundle, photos, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    control = tmp_path / "a\x1b[2Jname\x07.png"  # a name that would clear a terminal and ring its bell
    control.write_text("not an image either")
    odd = tmp_path / "odd.npy"
    np.save(odd, np.zeros((2, 5), np.float64))
    old = json.loads((bundle / "manifest.json").read_text())
    old.pop("preprocessing")
    old["card"].pop("preprocessing")
    older = tmp_path / "manifest.json"
    older.write_text(json.dumps(old))
    rules = {}
    for name, change in (("bad-rule", {"std": [0.2, 0.0, 0.2]}), ("big-crop", {"crop": [2048, 2048], "resize_shorter_side": 2048}),
                         ("long-side", {"resize_shorter_side": 5000}), ("inf-crop", {"crop": [float("inf")] * 2}),
                         ("huge-mean", {"mean": [10**400] * 3}), ("range-number", {"pixel_range": 5}),
                         ("mean-text", {"mean": "123"}), ("std-mapping", {"std": {"0": 1, "1": 2, "2": 3}}),
                         ("side-4096", {"resize_shorter_side": 4096})):
        rule = json.loads((bundle / "manifest.json").read_text())
        rule["preprocessing"].update(change)
        rules[name] = tmp_path / f"{name}.json"
        rules[name].write_text(json.dumps(rule))
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.npy"  # 128 bytes declaring 28.6 TiB
    with open(huge, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 1024, 1024, 3)})
    image = photos / "a00.png"
    wide = tmp_path / "wide.npy"  # one row of 600,000 pixels: resized to a shorter side of 4096, 2.5e9 wide
    np.save(wide, np.zeros((1, 600000, 3), np.uint8))
    long_labels = tmp_path / "long_labels.txt"  # attacker review: read whole, whatever its size
    with open(long_labels, "wb") as handle:
        handle.truncate((1 << 20) + 1)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep\n")
    linked_report = tmp_path / "linked.json"  # a planted link where the report goes: refused, not replaced
    linked_report.symlink_to(precious)
    zero_width = tmp_path / "zero_width.npy"  # attacker review: a ZeroDivisionError traceback
    np.save(zero_width, np.zeros((1, 5, 0, 3), np.uint8))
    onnx = ["--onnx", bundle / "model.conditional.onnx"]
    return {
        "missing file": ([*onnx, tmp_path / "nope.png"], "not found"),
        "wrong image": ([*onnx, text], "is not a readable image"),
        "control characters in a file name": ([*onnx, control], "a\\x1b[2Jname\\x07.png is not a readable image"),
        "other file type": ([*onnx, bundle / "manifest.json"], "is not an image"),
        "wrong array": ([*onnx, odd], "pass uint8 images"),
        "manifest without preprocessing": ([*onnx, "--manifest", older, photos], "records no preprocessing rule (a bundle made before it was stored); re-create the bundle on the desktop "
                                           "with this toolkit's cosinegate build-engine."),
        "manifest with a bad rule": ([*onnx, "--manifest", rules["bad-rule"], photos],
                                     "3 positive stds; re-create the bundle on the desktop (cosinegate build-engine)."),
        "manifest with a crop over 1024": ([*onnx, "--manifest", rules["big-crop"], image], "not a crop of 8 to 1024"),
        "manifest with a side over 4096": ([*onnx, "--manifest", rules["long-side"], image], "a side from the crop to 4096"),
        "manifest with an infinite crop": ([*onnx, "--manifest", rules["inf-crop"], image], "lacks a numeric crop"),
        "manifest with a 400-digit mean": ([*onnx, "--manifest", rules["huge-mean"], image], "lacks a numeric crop"),
        "manifest with a pixel range that is a number": ([*onnx, "--manifest", rules["range-number"], image],
                                                         "is not pixels 0..255"),
        "manifest with a mean that is text": ([*onnx, "--manifest", rules["mean-text"], image], "lacks a numeric crop"),
        "manifest with a std that is a mapping": ([*onnx, "--manifest", rules["std-mapping"], image], "lacks a numeric crop"),
        "an image that would be resized past the pixel bound": ([*onnx, "--manifest", rules["side-4096"], wide],
                                                                "wide.npy holds an image of 600000x1 resized"),
        "a FIFO as the manifest": ([*onnx, "--manifest", fifo, image], "is not a regular file of at most"),
        "a FIFO named": ([*onnx, fifo], "fifo.png is not a regular file"),
        "a .npy header over its size": ([*onnx, huge], "huge.npy declares a uint8 [10000000, 1024, 1024, 3] array"),
        "labels over a MiB": ([*onnx, "--labels", long_labels, photos], "long_labels.txt is over 1048576 bytes"),
        "a --json report path that is a link": ([*onnx, photos, "--json", linked_report],
                                                 "linked.json is a link or not a regular file"),
        "a zero-width image": ([*onnx, zero_width], "zero_width.npy holds an empty [1, 5, 0, 3] array"),
        "missing graph": (["--onnx", tmp_path / "none.onnx", photos], "none.onnx not found"),
        "a folder as the graph": (["--onnx", bundle, photos], "is a folder; pass a model.*.onnx file"),
        "no engine built": ([photos], "no engine in"),
        "missing labels": ([*onnx, "--labels", tmp_path / "labels.txt", photos], "labels file"),
    }


def test_bad_inputs_are_one_line_and_exit_2(default_bundle, photos, tmp_path):
    for what, (args, text) in bad_cases(default_bundle, photos, tmp_path).items():
        done = run_script(default_bundle / "run_engine.py", *args)
        assert done.returncode == 2, (what, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and done.stderr.strip().count("\n") == 0, (what, done.stderr)
        assert text in done.stderr and "Traceback" not in done.stderr, (what, done.stderr)
        assert done.stderr.strip().isprintable(), (what, done.stderr)
    assert (tmp_path / "precious.txt").read_text() == "keep\n" and (tmp_path / "linked.json").is_symlink()


def test_a_fifo_in_an_image_folder_is_skipped(default_bundle, photos, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photos / "a00.png", folder)
    os.mkfifo(folder / "b.jpg")  # opened, it would block until something writes to it
    done = subprocess.run([sys.executable, str(default_bundle / "run_engine.py"), "--onnx",
                           str(default_bundle / "model.conditional.onnx"), str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "a00.png" in done.stdout and "b.jpg" not in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("1 images: mean executed MACs")


# ---- the OpenCV path: JetPack ships OpenCV (cv2), not Pillow ----------------------------------------------------------

WITHOUT_PILLOW = """import atexit, re, runpy, sys
sys.modules["PIL"] = None  # as on a board with JetPack's OpenCV and no Pillow
# peak memory of this program (VmHWM; getrusage's maxrss would carry the forking pytest's own peak across exec)
atexit.register(lambda: print("peak-kb", re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_without_pillow(script, *args, tmp_path):
    wrapper = tmp_path / "without_pillow.py"
    wrapper.write_text(WITHOUT_PILLOW)
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}  # the script's own limit, not ours
    return subprocess.run([sys.executable, str(wrapper), str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture()
def readers(monkeypatch):
    """run_engine's Pillow reader and its OpenCV reader (Pillow hidden while the reader is chosen)."""
    from cosinegate.trt import run_engine

    pillow = run_engine.image_reader()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "PIL", None)
        m.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "0")  # image_reader sets it; undone with the context, as if never set
        opencv = run_engine.image_reader()
    assert (pillow[0], opencv[0]) == ("Pillow", "OpenCV")
    return run_engine, pillow, opencv


def test_opencv_decodes_as_pillow_and_resizes_within_a_few_levels(readers, test_images, tmp_path):
    """The same pixels from PNG (RGB, gray, 16-bit), JPEG and an EXIF-rotated JPEG (both decoders are libjpeg-turbo's
    and libpng's), a JPEG with bytes after its end included; the resize (INTER_AREA / INTER_LINEAR against Pillow's
    bilinear) within 8 levels (5 measured), mean under 1."""
    run_engine, pillow, opencv = readers
    rgb = np.asarray(Image.fromarray(test_images.images[0]).resize((64, 48), Image.BICUBIC))
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=90)
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray((np.arange(32 * 40, dtype=np.uint16).reshape(32, 40) * 51)).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    (tmp_path / "trailer.jpg").write_bytes((tmp_path / "rgb.jpg").read_bytes() + b"\0" * 64 + b"camera trailer")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    for name in ("rgb.png", "rgb.jpg", "gray.png", "deep.png", "rotated.jpg", "trailer.jpg"):
        mine, theirs = opencv[1](tmp_path / name), pillow[1](tmp_path / name)
        assert mine.shape == theirs.shape and mine.dtype == np.uint8, name
        assert np.array_equal(mine, theirs), (name, np.abs(mine.astype(int) - theirs).max())
    assert pillow[1](tmp_path / "rotated.jpg").shape == (64, 48, 3)
    pre = {"crop": [32, 32], "resize_shorter_side": 37, "resize": "eval"}
    small = np.ascontiguousarray(rgb[:20, :24])
    for array in (rgb, small):  # shrunk (48 -> 37) and enlarged (20 -> 37)
        mine = run_engine.fit(array, pre, opencv[2]).astype(int)
        theirs = run_engine.fit(array, pre, pillow[2]).astype(int)
        assert mine.shape == theirs.shape == (32, 32, 3)
        assert np.abs(mine - theirs).max() <= 8 and np.abs(mine - theirs).mean() < 1.0, np.abs(mine - theirs).max()


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_is_complete_exactly_from_its_end_marker_on(test_images, tmp_path, progressive):
    """jpeg_complete on every cut of a JPEG with a thumbnail (an EXIF segment holding its own scan and end markers)
    and a trailer of random bytes (a camera's: FF DA and FF D9 among them): complete exactly from the main image's
    end marker on, in reads of any size (markers split between reads)."""
    from cosinegate.trt.run_engine import jpeg_complete

    def jpeg(array, **options):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "JPEG", **options)
        return buffer.getvalue()

    thumbnail = jpeg(np.ascontiguousarray(test_images.images[4][:8, :8]), quality=50)
    main = jpeg(test_images.images[3], quality=80, progressive=progressive)
    exif = b"\xff\xe1" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail  # an APP1 segment around the thumbnail
    image = main[:2] + exif + main[2:]
    rng = np.random.default_rng(0)
    trailer = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes() + b"\xff\xda\x00\x08" + b"\xff\xd9" * 3
    data = image + trailer
    cut = tmp_path / "cut.jpg"
    for end in range(0, len(data) + 1):
        cut.write_bytes(data[:end])
        expected = end >= len(image) if end >= 2 else True  # under 2 bytes: no JPEG at all
        for chunk in ((64, 1 << 16) if end % 13 else (1, 2, 3, 64)):
            assert jpeg_complete(cut, chunk) == expected, (end, chunk)
    assert Image.open(io.BytesIO(data)).size == (32, 32)  # the file with its trailer is a readable image


def test_the_jpeg_walk_over_crafted_scans(tmp_path):
    """Scan data full of stuffed bytes (FF 00), restart markers and fill (FF FF) is data; a second start-of-image
    stands alone; the end marker is found after any of them, and its absence means cut."""
    from cosinegate.trt.run_engine import jpeg_complete

    scan = b"\xff\xda\x00\x08" + b"\x01\x01\x00\x00\x3f\x00"  # a start of scan with its 6-byte header
    data = (b"\xff\xd8" + b"\xff\xd8" + b"\xff\xe0\x00\x04\xff\xd9" + scan
            + (b"\x12\xff\x00" * 5000 + b"\xff\xd3" + b"\xff" * 3000 + b"\x00\x34") * 3 + b"\xff\xff\xd9")
    path = tmp_path / "crafted.jpg"
    for cut, expected in ((len(data), True), (len(data) - 1, False), (len(data) - 2, False), (len(data) // 2, False)):
        path.write_bytes(data[:cut])
        for chunk in (1, 7, 1 << 16):
            assert jpeg_complete(path, chunk) == expected, (cut, chunk)


def test_result_lines_escape_control_characters_in_file_names(default_bundle, photos, tmp_path):
    named = tmp_path / "a\x1b[2Jname.png"
    shutil.copy(photos / "a00.png", named)
    done = run_script(default_bundle / "run_engine.py", "--onnx", default_bundle / "model.conditional.onnx", named)
    assert done.returncode == 0 and "a\\x1b[2Jname.png" in done.stdout, done.stdout + done.stderr
    assert all(line.isprintable() for line in done.stdout.splitlines()), done.stdout


def test_onnx_path_with_opencv_only(default_bundle, photos, tmp_path):
    """run_engine.py with OpenCV and no Pillow: a note says so; images of the input size (no resize) and the .npy
    stack give exactly the toolkit's labels and gates."""
    report = tmp_path / "report.json"
    done = run_without_pillow(default_bundle / "run_engine.py", "--onnx", default_bundle / "model.conditional.onnx",
                              photos, "--json", report, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "images decoded and resized with OpenCV" in done.stdout and done.stderr == "", done.stderr
    rows = {r["file"]: (r["index"], r["gates"]) for r in json.loads(report.read_text())["images"]}
    expected = toolkit_rows(default_bundle, photos)
    assert sorted(rows) == sorted(expected)
    native = [f for f in expected if "/b" not in f.replace(str(photos), "")]  # b*.png are resized
    assert len(native) == 16 and {f: rows[f] for f in native} == {f: expected[f] for f in native}


def test_opencv_bad_images_are_one_line_without_decoding_a_bomb(default_bundle, test_images, tmp_path):
    """A cut-off JPEG (libjpeg only warns and fills it with gray; after an earlier warning it does not even warn), a
    file that is no image and one over the pixel limit: one line each, exit 2, nothing of OpenCV's own messages; the
    oversized one refused from its header (the process never holds its 151 MB of pixels)."""
    whole = tmp_path / "whole.jpg"
    Image.fromarray(test_images.images[0]).resize((64, 64)).save(whole, quality=90)
    data = whole.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    scan = data.rfind(b"\xff\xda")  # two stray bytes before the scan: libjpeg's one warning is "Corrupt JPEG data"
    (tmp_path / "junk-cut.jpg").write_bytes((data[:scan] + b"\0\0" + data[scan:])[: len(data) * 3 // 4])
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("L", (8000, 6300)).save(tmp_path / "huge.png")  # 50.4 M pixels, 49 kB of PNG
    cases = {"cut.jpg": "is truncated (a JPEG without its end)", "junk-cut.jpg": "is truncated (a JPEG without its end)",
             "notes.png": "is not an image OpenCV can read",
             "huge.png": "over the 50000000 pixel limit"}
    for name, text in cases.items():
        done = run_without_pillow(default_bundle / "run_engine.py", "--onnx", default_bundle / "model.conditional.onnx",
                                  tmp_path / name, tmp_path=tmp_path)  # a runner, so the images are what is judged
        assert done.returncode == 2 and text in done.stderr, (name, done.stderr)
        assert done.stderr.startswith("error: ") and done.stderr.strip().count("\n") == 0, (name, done.stderr)
        if name == "huge.png":
            rss_mb = int(done.stdout.split("peak-kb")[-1]) / 1024
            assert rss_mb < 151, f"the image was decoded before the size check ({rss_mb:.0f} MB)"


def test_graph_metadata_alone_is_enough_for_the_onnx_path(default_bundle, photos, tmp_path):
    """--onnx on a graph outside a bundle: the preprocessing rule and MACs come from the graph's metadata."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(default_bundle / "run_engine.py", alone)
    shutil.copy(default_bundle / "model.conditional.onnx", alone)
    report = tmp_path / "alone.json"
    done = run_script(alone / "run_engine.py", "--onnx", alone / "model.conditional.onnx", photos, "--json", report)
    assert done.returncode == 0, done.stderr
    rows = json.loads(report.read_text())["images"]
    assert {r["file"]: (r["index"], r["gates"]) for r in rows} == toolkit_rows(default_bundle, photos)


def bundle_run_engine(bundle):
    """The bundle's own copy of run_engine.py, imported as the board imports it (from the bundle folder)."""
    sys.path.insert(0, str(bundle))
    try:
        import run_engine
    finally:
        sys.path.remove(str(bundle))
    return run_engine


def test_the_default_engine_is_the_one_built_or_the_winner(default_bundle, tmp_path):
    run_engine = bundle_run_engine(default_bundle)
    results = tmp_path / "results"
    results.mkdir()
    (results / "m-conditional-fp16-trt10.3.0-sm87.engine").write_bytes(b"x")
    assert run_engine.find_engine(results).name == "m-conditional-fp16-trt10.3.0-sm87.engine"
    (results / "m-pruned-fp16-trt10.3.0-sm87.engine").write_bytes(b"x")
    with pytest.raises(run_engine.BadInput, match="2 engines .*--engine"):
        run_engine.find_engine(results)
    (results / "winner.txt").write_text("winner: none (no candidate timed)\n")  # as build_on_device.sh writes them
    assert run_engine.find_engine(results, form="conditional").name == "m-conditional-fp16-trt10.3.0-sm87.engine"
    (results / "winner.txt").write_text("winner: pruned\n")
    assert run_engine.find_engine(results, form="conditional").name == "m-pruned-fp16-trt10.3.0-sm87.engine"
    (results / "winner.txt").write_bytes(b"winner: \xff\xfe\n")  # not UTF-8: no winner named, the bundle's own form
    assert run_engine.find_engine(results, form="conditional").name == "m-conditional-fp16-trt10.3.0-sm87.engine"


@pytest.mark.parametrize("form, policy, checkpoint", [
    ("conditional", "auto", "dyn"), ("conditional", "dense", "dyn"), ("masked", "auto", "dyn"), ("masked", "pruned", "dyn"),
    ("compact", "conditional-all", "dyn"), ("flat", "auto", "dyn"), ("masked", "conditional-all", "paper"),
    ("flat", "auto", "paper")])
def test_executed_macs_follow_the_graph_that_runs_as_the_toolkit_counts_them(default_bundle, request, tmp_path, form,
                                                                          policy, checkpoint):
    """Board walkthrough: a masked graph was credited with the savings of its gates' decisions though it computes every
    gated block, and a gate-free (dense) graph was charged for gate heads it lacks (-0.3% saved). run_engine.py's count
    is the toolkit's graph_mac_table on every form and policy."""
    from cosinegate.bench.graphs import graph_info
    from cosinegate.onnx import export_checkpoint

    run_engine = bundle_run_engine(default_bundle)
    path = tmp_path / "g.onnx"
    export_checkpoint(request.getfixturevalue(f"{checkpoint}_checkpoint"), path, form, policy=policy)
    meta, table, kinds = graph_info(path)[:3]
    infos = [run_engine.model_info(None, json.loads(json.dumps(meta)))]
    if checkpoint == "paper":  # a graph whose MAC counts lack the flag: paper mode still computes F(x) before deciding
        bare = json.loads(json.dumps(meta))
        del bare["macs"]["residual_always_computed"]
        infos.append(run_engine.model_info(None, bare))
    n = len(kinds)
    fixed = {"always_run": True, "dense": True, "always_skipped": False, "dropped": False}  # the graph's fixed columns

    def decided(ran):
        return [fixed.get(k, r) for k, r in zip(kinds, ran)]

    decisions = [decided(r) for r in [[True] * n, [False] * n] + (np.random.default_rng(0).random((30, n)) > 0.5).tolist()]
    counted = [table.executed(r) for r in decisions]
    for info in infos:
        assert [run_engine.executed_macs(info, ran, info["form"]) for ran in decisions] == counted
    if policy == "dense":  # no gate head left: every image costs the dense network exactly
        assert set(counted) == {table.dense} and sum(b.gate for b in table.blocks) == 0
    elif form in ("masked", "flat"):  # every gated block computed whatever its gate says
        assert len(set(counted)) == 1 and (policy == "pruned" or {"dynamic", "gated"} & set(kinds))
    else:
        assert counted[1] < counted[0]


def test_a_masked_or_candidate_engine_is_counted_by_its_own_graph(default_bundle, dyn_checkpoint, photos, tmp_path):
    """--onnx with the bundle's manifest counts the graph given (its own kinds and form); an engine's by its .json or,
    for a selection candidate's engine, by the kinds the bundle records for it."""
    from cosinegate.onnx import export_checkpoint

    summaries = {}
    for form, policy in (("masked", "auto"), ("conditional", "dense")):
        path = tmp_path / f"model.{form}-{policy}.onnx"
        export_checkpoint(dyn_checkpoint, path, form, policy=policy)
        done = run_script(default_bundle / "run_engine.py", "--onnx", path, photos)
        assert done.returncode == 0, done.stderr
        summaries[policy] = done.stdout.strip().splitlines()[-2:]
        if form == "masked":  # per image: what its gates decided, not blocks that "ran" (all of them are computed)
            assert " gates on for " in done.stdout.splitlines()[0] and " ran " not in done.stdout.splitlines()[0]
    assert summaries["dense"][-1].endswith("(0.0% saved)")
    masked = summaries["auto"]
    assert masked[-1].startswith("this masked graph computes every gated block; its gates' decisions would execute")
    assert float(masked[0].split("(")[-1].split("%")[0]) < float(masked[-1].split("(")[-1].split("%")[0])
    run_engine = bundle_run_engine(default_bundle)
    info = {"form": "conditional", "kinds": ["dynamic"] * 9}
    manifest = {"model": "m", "precision": "fp16", "candidates": {"dense": {"kinds": ["always_run"] * 9}}}
    engine = tmp_path / "m-dense-fp16-trt10.3.0-sm87.engine"
    assert run_engine.graph_kinds(info, engine, manifest)["kinds"] == ["always_run"] * 9
    older = dict(manifest, candidates={"dense": {"onnx": "model.dense.onnx"}})  # a bundle from before kinds were kept
    assert run_engine.graph_kinds(info, engine, older) == dict(info, note=(
        "note: the bundle records no block kinds for the dense candidate; its MACs are counted with the bundle graph's "
        "(re-create the bundle for exact ones)"))
    assert run_engine.graph_kinds(info, tmp_path / "m-conditional-fp16.engine", manifest) == info
    (tmp_path / "m-conditional-fp16.engine.json").write_text(json.dumps(
        {"onnx_metadata": {"form": "masked", "blocks": [{"kind": "dynamic"}] * 9}}))
    assert run_engine.graph_kinds(info, tmp_path / "m-conditional-fp16.engine", manifest)["form"] == "masked"


def test_mac_counts_past_what_a_float_holds_are_left_out(default_bundle, photos, tmp_path):
    manifest = json.loads((default_bundle / "manifest.json").read_text())
    manifest["card"]["macs"]["dense"] = 10**400
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    done = run_script(default_bundle / "run_engine.py", "--onnx", default_bundle / "model.conditional.onnx",
                      "--manifest", path, photos / "a00.png")
    assert done.returncode == 0 and "no MAC counts recorded" in done.stdout, done.stderr


# ---- the TensorRT path's plumbing, with a stand-in TensorRT and CUDA (never evidence that an engine runs) ----


class FakeCuda:
    """Device memory as a dict of byte arrays keyed by fake pointers; copies are immediate."""

    H2D, D2H = 1, 2

    def __init__(self):
        self.memory, self.next = {}, 0x1000

    def malloc(self, nbytes):
        self.next += 0x100000
        self.memory[self.next] = bytearray(int(nbytes))
        return self.next

    def stream(self):
        return 7

    def copy(self, dst, src, nbytes, kind, stream):
        import ctypes

        if kind == self.H2D:
            self.memory[dst][:nbytes] = ctypes.string_at(src, nbytes)
        else:
            ctypes.memmove(dst, bytes(self.memory[src][:nbytes]), nbytes)

    def sync(self, stream):
        pass


def fake_tensorrt(graph, cuda, log, cores=None):
    """A tensorrt stand-in whose engine runs ``graph`` on ONNX Runtime inside execute_async_v3; records each TensorRT
    name the runner touches in ``log``, and its runtime's DLA core at each deserialization in ``cores`` (a device
    with two DLA cores; -1, TensorRT's default, where none was set)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    shapes = {"input": (1, 3, 32, 32), "logits": (1, 10), "gates": (1, 9)}
    names = list(shapes)

    class Recorded:
        def __getattribute__(self, name):
            if not name.startswith("_"):
                log.add(name)
            return object.__getattribute__(self, name)

        def __setattr__(self, name, value):
            if not name.startswith("_"):
                log.add(name)
            object.__setattr__(self, name, value)

    class Context(Recorded):
        def __init__(self):
            self._addresses = {}

        def set_tensor_address(self, name, pointer):
            self._addresses[name] = pointer

        def execute_async_v3(self, stream):
            x = np.frombuffer(bytes(cuda.memory[self._addresses["input"]]), np.float32).reshape(shapes["input"])
            for name, value in zip(("logits", "gates"), session.run(["logits", "gates"], {"input": x})):
                cuda.memory[self._addresses[name]][:] = np.ascontiguousarray(value, np.float32).tobytes()
            return True

    class Engine(Recorded):
        num_io_tensors = 3

        def get_tensor_name(self, i):
            return names[i]

        def get_tensor_shape(self, name):
            return shapes[name]

        def get_tensor_dtype(self, name):
            return trt.float32

        def create_execution_context(self):
            return Context()

    class Module(Recorded):
        __version__ = "10.3.0"
        float32, float16, int8, int32, bool = "f32", "f16", "i8", "i32", "b"

        class Logger:
            WARNING = 2

            def __init__(self, level):
                log.add("Logger")

        class Runtime(Recorded):
            num_DLA_cores = 2

            def __init__(self, logger):
                log.add("Runtime")
                object.__setattr__(self, "DLA_core", -1)  # TensorRT's default, not the runner's doing

            def deserialize_cuda_engine(self, data):
                (cores if cores is not None else []).append(object.__getattribute__(self, "DLA_core"))
                return Engine()

    trt = Module()
    return trt


def test_tensorrt_path_plumbing_with_a_stand_in(default_bundle, photos, tmp_path):
    """Stand-in TensorRT + CUDA: the runner's copies and batching give the ONNX path's rows, and every TensorRT name it
    touches exists in the bindings of 8.5.2 (JetPack 5.1), 8.6.1 (6.0's 8.6 API) and 10.3.0 (6.1/6.2)."""
    run_engine = bundle_run_engine(default_bundle)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"stand-in")
    log, cuda = set(), FakeCuda()
    graph = default_bundle / "model.conditional.onnx"
    runner = run_engine.TensorRTRunner(engine, trt=fake_tensorrt(graph, cuda, log), cuda=cuda)
    info = run_engine.model_info(json.loads((default_bundle / "manifest.json").read_text()))
    items = run_engine.load_inputs(run_engine.list_inputs([str(photos)]), info["pre"], run_engine.image_reader())
    stand_in = run_engine.run_all(runner, items, info, None)
    onnx = run_engine.run_all(run_engine.OnnxRunner(graph), items, info, None)
    assert [(r["index"], r["gates"]) for r in stand_in] == [(r["index"], r["gates"]) for r in onnx]
    used = log
    assert {"execute_async_v3", "set_tensor_address", "num_io_tensors", "get_tensor_shape"} <= used
    for release in ("8.5.2", "8.6.1", "10.3.0"):
        names = {line.strip() for line in (TRT_API / f"{release}.txt").read_text().splitlines() if not line.startswith("#")}
        assert used <= names, (release, sorted(used - names))


def test_a_dla_engine_is_deserialized_on_the_core_it_was_built_for(default_bundle, tmp_path):
    """The engine manifest's settings.dla_core (else the bundle's) is set on the runtime before deserializing, as trtexec
    does (sampleEngines.cpp 8.5.2 l.113-116); a core the device lacks or a value that is no core is one line."""
    run_engine = bundle_run_engine(default_bundle)
    graph, engine = default_bundle / "model.conditional.onnx", tmp_path / "x.engine"
    engine.write_bytes(b"stand-in")
    bundle = json.loads((default_bundle / "manifest.json").read_text())
    assert bundle.get("dla_core") is None and run_engine.engine_dla_core(engine, bundle) is None
    assert run_engine.engine_dla_core(engine, dict(bundle, dla_core=0)) == 0
    (tmp_path / "x.engine.json").write_text(json.dumps({"settings": {"dla_core": 1}}))
    assert run_engine.engine_dla_core(engine, dict(bundle, dla_core=0)) == 1  # the engine's own record first
    log, cuda, cores = set(), FakeCuda(), []
    for core in (None, 1):
        run_engine.TensorRTRunner(engine, trt=fake_tensorrt(graph, cuda, log, cores), cuda=cuda, dla_core=core)
    assert cores == [-1, 1]
    with pytest.raises(run_engine.BadInput, match="DLA core 2 and this device has 2 DLA cores"):
        run_engine.TensorRTRunner(engine, trt=fake_tensorrt(graph, cuda, log), cuda=cuda, dla_core=2)
    for release in ("8.5.2", "8.6.1", "10.3.0"):
        names = {line.strip() for line in (TRT_API / f"{release}.txt").read_text().splitlines() if not line.startswith("#")}
        assert {"DLA_core", "num_DLA_cores"} <= log <= names, (release, sorted(log - names))
    (tmp_path / "x.engine.json").write_text(json.dumps({"settings": {"dla_core": "1"}}))
    with pytest.raises(run_engine.BadInput, match=r"names DLA core '1', not a core number"):
        run_engine.engine_dla_core(engine, bundle)


def test_a_tensorrt_before_8_5_is_refused_in_one_line(default_bundle, tmp_path):
    """Every target profile needs 8.5+ (named tensors, execute_async_v3); an older release's engine (binding API only)
    is refused by name instead of being run on a path nothing tests."""
    run_engine = bundle_run_engine(default_bundle)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"stand-in")

    class Old:
        __version__ = "8.4.3"

        class Logger:
            WARNING = 2

            def __init__(self, level):
                pass

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                return type("Engine", (), {"num_bindings": 3})()

    with pytest.raises(run_engine.BadInput, match="TensorRT 8.4.3 is older than 8.5") as info:
        run_engine.TensorRTRunner(engine, trt=Old(), cuda=FakeCuda())
    assert "\n" not in str(info.value)


# ---- a board that lacks a package, and files of the wrong kind: one line, exit status 2 --------------------------------

WITHOUT = """import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as on a board where it is not installed
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_without(modules, script, *args, tmp_path):
    wrapper = tmp_path / "without.py"
    wrapper.write_text(WITHOUT)
    return subprocess.run([sys.executable, str(wrapper), modules, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("script, modules, args, message", [
    ("run_engine.py", "numpy", ["--help"], "run_engine.py needs numpy: pip3 install 'numpy<1.24' (TensorRT 8.5 on JetPack "
                                            "5.1 needs np.bool; JetPack 6's TensorRT and OpenCV need numpy below 2)"),
    ("check_parity.py", "numpy", ["--help"], "check_parity.py needs numpy and Polygraphy"),
    ("check_parity.py", "polygraphy,polygraphy.comparator", ["reference.json"], "needs Polygraphy: pip3 install polygraphy"),
])
def test_a_missing_package_on_the_board_is_one_line_and_exit_2_not_a_failed_check(default_bundle, tmp_path, script,
                                                                                    modules, args, message):
    """check_parity.py's exit status 1 means parity failed: a missing numpy or Polygraphy must not look like that."""
    done = run_without(modules, default_bundle / script, *[default_bundle / a if a.endswith(".json") else a for a in args],
                       tmp_path=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_wrong_files_are_named_for_what_they_are(default_bundle, photos, tmp_path):
    missing = run_script(default_bundle / "check_parity.py", tmp_path / "nope.json")
    assert missing.returncode == 2 and "nope.json not found" in missing.stderr, missing.stderr
    graph = default_bundle / "model.conditional.onnx"
    onnx = run_script(default_bundle / "run_engine.py", "--engine", graph, photos)
    assert onnx.returncode == 2 and "is an ONNX graph, not a TensorRT engine; run it with --onnx" in onnx.stderr, onnx.stderr
    folder = tmp_path / "mixed"  # no engine built yet, and a file that is not an image: the engine is named first
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    shutil.copy(next(photos.iterdir()), folder)
    alone = tmp_path / "bundle"
    shutil.copytree(default_bundle, alone, ignore=shutil.ignore_patterns("results"))
    done = run_script(alone / "run_engine.py", folder)
    assert done.returncode == 2 and "engine" in done.stderr and "notes.txt" not in done.stderr, done.stderr


def test_a_crafted_graph_is_one_line_not_a_traceback(default_bundle, photos, tmp_path):
    """Attacker review: metadata nested 100,000 deep (RecursionError) and a graph whose logits are rank 1 (IndexError)
    reached run_engine.py --onnx as tracebacks."""
    import onnx
    from onnx import TensorProto, helper

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(default_bundle / "run_engine.py", alone)
    model = onnx.load(str(default_bundle / "model.conditional.onnx"))
    entry = next(p for p in model.metadata_props if p.key == "cosinegate.classes")
    entry.value = "[" * 100000
    onnx.save(model, str(alone / "deep.onnx"))
    deep = run_script(alone / "run_engine.py", "--onnx", alone / "deep.onnx", photos)
    assert deep.returncode == 0 and "Traceback" not in deep.stderr, deep.stderr  # the value is ignored: labels are indices
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    nodes = [helper.make_node("ReduceMean", ["input"], ["logits"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("ReduceMean", ["input"], ["gates"], axes=[2, 3], keepdims=0)]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1]),
               helper.make_tensor_value_info("gates", TensorProto.FLOAT, [1, 3])]
    rank1 = helper.make_model(helper.make_graph(nodes, "rank1", [x], outputs), opset_imports=[helper.make_opsetid("", 13)])
    rank1.ir_version = 8
    rank1.metadata_props.extend(p for p in model.metadata_props if p.key != "cosinegate.classes")
    onnx.save(rank1, str(alone / "rank1.onnx"))
    done = run_script(alone / "run_engine.py", "--onnx", alone / "rank1.onnx", photos)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "not the toolkit's `logits` [N, classes]" in done.stderr


def test_the_wire_walk_knows_every_onnx_field_that_holds_a_tensor_or_graph():
    """run_engine.py's table of onnx.proto fields, derived again from onnx's own descriptors: every message reachable
    from ModelProto that can hold a TensorProto, and the fields that lead there."""
    import onnx

    from cosinegate.trt import run_engine

    tensor = onnx.TensorProto.DESCRIPTOR
    reachable, todo = {}, [onnx.ModelProto.DESCRIPTOR]
    while todo:
        message = todo.pop()
        if message.full_name not in reachable:
            reachable[message.full_name] = message
            todo += [f.message_type for f in message.fields if f.message_type is not None]
    holds = {tensor.full_name}
    while True:  # the messages that hold a tensor, directly or through others
        more = {name for name, m in reachable.items() if any(f.message_type and f.message_type.full_name in holds
                                                              for f in m.fields)} - holds
        if not more:
            break
        holds |= more
    kinds = {"onnx.ModelProto": "model", "onnx.TrainingInfoProto": "training_info", "onnx.GraphProto": "graph",
             "onnx.FunctionProto": "function", "onnx.NodeProto": "node", "onnx.AttributeProto": "attribute",
             "onnx.SparseTensorProto": "sparse", "onnx.TensorProto": "tensor"}
    assert {name.replace("onnx_proto.", "onnx.") for name in holds} == set(kinds)  # a new container would show here
    derived = {kinds[name.replace("onnx_proto.", "onnx.")]: {
        f.number: kinds[f.message_type.full_name.replace("onnx_proto.", "onnx.")] for f in reachable[name].fields
        if f.message_type is not None and f.message_type.full_name in holds} for name in holds}
    assert derived == run_engine.ONNX_TENSOR_FIELDS
    assert (tensor.fields_by_name["external_data"].number, tensor.fields_by_name["data_location"].number) == (
        run_engine.TENSOR_EXTERNAL_DATA, run_engine.TENSOR_DATA_LOCATION)
    assert onnx.TensorProto.EXTERNAL == run_engine.EXTERNAL


def test_the_wire_walk_refuses_nesting_past_protobufs_limit_and_walks_wide_graphs_in_little_memory():
    from cosinegate.trt import run_engine

    def field(number, payload):
        size, out = len(payload), bytearray([number << 3 | 2])
        while True:
            out.append(size & 0x7F | (0x80 if size >> 7 else 0))
            size >>= 7
            if not size:
                return bytes(out) + payload

    graph = b""
    for _ in range(run_engine.MAX_NESTING):  # graph.node -> node.attribute -> attribute.g -> graph ...
        graph = field(1, field(5, field(6, graph)))
    with pytest.raises(ValueError, match="nested over"):
        run_engine.uses_external_data(field(7, graph))
    assert run_engine.uses_external_data(field(7, field(1, b"") * 200000)) is False  # wide: one stack entry per level


def test_a_graph_with_external_data_is_refused_before_onnx_runtime_opens_it(default_bundle, photos, tmp_path):
    """ONNX Runtime before 1.24 (what a board's pip gives) follows a crafted graph's external-data location outside
    its folder (seen with 1.17.3 reading ../secret.bin); run_engine.py refuses any external data, inside or out,
    and a file that is no model, in one line."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    from cosinegate.trt import run_engine

    graph = default_bundle / "model.conditional.onnx"
    assert not run_engine.uses_external_data(graph.read_bytes())
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(default_bundle / "run_engine.py", alone)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    model = onnx.load(str(graph))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    onnx.save(model, str(alone / "inside.onnx"))  # and alone/w.bin: the layout onnx itself writes for large models
    for tensor in (t for t in model.graph.initializer if t.external_data):
        next(e for e in tensor.external_data if e.key == "location").value = "../secret.bin"
    (alone / "outside.onnx").write_bytes(model.SerializeToString())
    (alone / "cut.onnx").write_bytes(graph.read_bytes()[:1000])
    for name, says in (("inside", "keeps tensors in external files"), ("outside", "keeps tensors in external files"),
                       ("cut", "is not an ONNX graph (")):
        done = run_script(alone / "run_engine.py", "--onnx", alone / f"{name}.onnx", photos)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr, (name, done.stderr)


def test_a_cpu_onnxruntime_graph_runs_only_under_the_onnx_runtime_and_cpu_that_optimized_it(default_bundle, photos,
                                                                                             tmp_path):
    """run_engine.py imports nothing from the toolkit, so it reads the manifest the toolkit writes beside a
    cpu-onnxruntime graph (written here by the toolkit's own OrtEngineManifest) on its own, with the toolkit's checks:
    hash, ONNX Runtime version, CPU machine, model and vector extensions; the bundle's plain graphs run anywhere."""
    import onnxruntime

    from cosinegate.artifacts import sha256_file
    from cosinegate.manifests import OrtEngineManifest
    from cosinegate.runtime.ort_engine import cpu_identity

    graph = tmp_path / "model.ort.onnx"
    shutil.copy(default_bundle / "model.conditional.onnx", graph)
    here, version = cpu_identity(), onnxruntime.__version__
    cases = {
        "as built": ({}, None),
        "another release": ({"onnxruntime_version": "1.2.3"}, f"optimized by ONNX Runtime 1.2.3, this is ONNX Runtime {version}"),
        "other vector extensions": ({"cpu": dict(here, isa=["neon"])}, "(isa), this CPU is"),
        "another CPU model": ({"cpu": dict(here, model="Some Other CPU")}, "optimized on CPU Some Other CPU (model)"),
        "graph changed": ({"engine_sha256": "0" * 64}, "does not match the hash in model.ort.onnx.json"),
    }
    for case, (changes, says) in cases.items():
        fields = dict(engine_sha256=sha256_file(graph), target="cpu-onnxruntime", onnxruntime_version=version, cpu=here)
        (tmp_path / "model.ort.onnx.json").write_text(json.dumps(OrtEngineManifest(**{**fields, **changes}).to_json()))
        done = run_script(default_bundle / "run_engine.py", "--onnx", graph, photos)
        assert done.returncode == (2 if says else 0), (case, done.stderr)
        if says:
            assert done.stderr.strip().count("\n") == 0 and says in done.stderr, (case, done.stderr)
            assert done.stderr.startswith(f"error: {graph} was built for the cpu-onnxruntime target and cannot run here: ")


@pytest.mark.parametrize("cpuinfo", [
    "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512bw\n",
    "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n",
    "",
])
def test_run_engine_names_the_cpu_as_the_toolkit(cpuinfo, tmp_path):
    from cosinegate.runtime import ort_engine
    from cosinegate.trt import run_engine

    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert run_engine.cpu_identity(str(path)) == ort_engine.cpu_identity(path)
    assert run_engine.cpu_identity() == ort_engine.cpu_identity()  # this machine's
