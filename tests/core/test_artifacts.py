"""One chunked file hasher in the package: cosinegate.artifacts.file_digest (the device script keeps its own stdlib copy)."""

import hashlib
from pathlib import Path

from cosinegate.artifacts import file_digest, sha256_file
from cosinegate.data import cifar10
from cosinegate.training import init_from

PACKAGE = Path(__file__).resolve().parents[2] / "cosinegate"
STANDALONE = {PACKAGE / "artifacts.py", PACKAGE / "trt" / "device_script.py"}  # the latter runs on a board without the package


def test_file_digest_matches_hashlib_across_chunks(tmp_path):
    data = bytes(range(256)) * 9000  # > 2 chunks of 1 MiB
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(path, "md5") == hashlib.md5(data).hexdigest() == cifar10._md5(path)


def test_the_package_has_no_other_chunked_file_reader():
    others = [p for p in PACKAGE.rglob("*.py") if p not in STANDALONE and "iter(lambda" in p.read_text()]
    assert others == []
    assert init_from.sha256_file is sha256_file
