"""Image folders from outside: decoded faithfully or refused in one line, never blocking, never silently dropped."""

import os

import numpy as np
import pytest
from conftest import within
from PIL import Image

from cosinegate.data import imagefolder
from cosinegate.data.imagefolder import load_imagefolder
from cosinegate.errors import CosineGateError


def _tree(root, classes=("a", "b"), per_class=2):
    for split in ("train", "test"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    root = _tree(tmp_path / "d")
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 256).astype(np.uint16)  # 0 .. 65280
    Image.fromarray(ramp).save(root / "train" / "a" / "0.png")
    assert Image.open(root / "train" / "a" / "0.png").mode.startswith("I;16")
    train, _ = load_imagefolder(root, 16)
    image = train.images[list(train.ids).index("train/a/0.png")]
    assert np.array_equal(image[..., 0], (ramp >> 8).astype(np.uint8)) and image.min() == 0 and image.max() == 255


def test_a_fifo_among_the_images_is_refused_without_blocking(tmp_path):
    root = _tree(tmp_path / "d")
    os.mkfifo(root / "train" / "a" / "x.png")
    with within(5), pytest.raises(CosineGateError, match=r"x\.png is not a regular file"):
        load_imagefolder(root, 16)


def test_a_class_folder_that_is_a_symlink_loop_is_named_not_dropped(tmp_path):
    root = _tree(tmp_path / "d")
    os.symlink(root / "train" / "loop", root / "train" / "loop")
    with pytest.raises(CosineGateError, match="loop is a symbolic link that loops"):
        load_imagefolder(root, 16)


def test_a_class_without_training_images_is_refused(tmp_path):
    root = _tree(tmp_path / "d")
    for f in (root / "train" / "b").iterdir():
        f.unlink()
    with pytest.raises(CosineGateError, match="class b has no image in .*train"):
        load_imagefolder(root, 16)


def _bomb(path, side=30000):
    """A tiny PNG whose header says side x side pixels (the header is all a reader needs to refuse it)."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("1", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", side, side)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
    path.write_bytes(bytes(data))


def test_a_decompression_bomb_is_refused_with_the_limit(tmp_path):
    root = _tree(tmp_path / "d")
    _bomb(root / "train" / "a" / "bomb.png")
    with pytest.raises(CosineGateError, match=r"bomb\.png is .*over the 50,000,000 pixel limit"):
        load_imagefolder(root, 16)


def test_a_32_bit_image_is_refused_not_clipped(tmp_path):
    root = _tree(tmp_path / "d")
    Image.fromarray(np.full((16, 16), 70000, np.int32), "I").save(root / "train" / "a" / "0.tif")
    with pytest.raises(CosineGateError, match=r"unreadable image.*0\.tif"):
        load_imagefolder(root, 16)


def test_a_newline_in_a_file_name_stays_on_one_line(tmp_path):
    root = _tree(tmp_path / "d")
    (root / "train" / "a" / "bad\nname.png").write_bytes(b"not an image")
    with pytest.raises(CosineGateError) as info:
        load_imagefolder(root, 16)
    assert "bad\\nname.png" in str(info.value) and "\n" not in str(info.value)
    assert imagefolder.shown("x\ty") == "x\\ty"


def test_every_command_error_is_one_line(tmp_path):
    from scripts_in_process import run

    code, _, err = run("train/evaluate.py", "--checkpoint", tmp_path / "no\nsuch\r.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no\\nsuch\\r.pt" in err, err
