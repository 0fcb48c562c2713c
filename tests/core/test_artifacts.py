"""cosinegate.artifacts: one chunked file hasher in the package (file_digest; the device script keeps its own stdlib
copy), a `--json -` report alone on stdout, and one-line refusals of inputs that are folders or missing."""

import hashlib
from pathlib import Path

import pytest

from cosinegate.artifacts import file_digest, sha256_file
from cosinegate.data import cifar10
from cosinegate.training import init_from

PACKAGE = Path(__file__).resolve().parents[2] / "cosinegate"
# the latter two run on a board without the package (run_engine.py hashes a cpu-onnxruntime graph itself)
STANDALONE = {PACKAGE / "artifacts.py", PACKAGE / "trt" / "device_script.py", PACKAGE / "trt" / "run_engine.py"}


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


REPORT_ON_STDOUT = """
import os, subprocess, sys
from cosinegate.artifacts import atomic_write_json, report_on_stdout
with report_on_stdout():
    print("a progress line")
    os.write(1, b"a C library's line\\n")
    subprocess.run([sys.executable, "-c", "print('a child process line')"], check=True)
    atomic_write_json("-", {"report": 1})
print("after")
"""


def test_a_dash_report_is_alone_on_stdout_whatever_else_writes_to_descriptor_1():
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", REPORT_ON_STDOUT], capture_output=True, text=True, check=True,
                          cwd=PACKAGE.parent)
    report, after = done.stdout.rsplit("}\n", 1)[0] + "}", done.stdout.rsplit("}\n", 1)[1]
    assert json.loads(report) == {"report": 1} and after == "after\n"  # stdout comes back after the block
    assert done.stderr.splitlines() == ["a progress line", "a C library's line", "a child process line"]


def test_a_dash_report_with_stdout_closed_is_no_traceback():
    import subprocess
    import sys

    script = ("from cosinegate.artifacts import atomic_write_json, report_on_stdout\n"
              "with report_on_stdout():\n    print('a progress line')\n    atomic_write_json('-', {'report': 1})\n")
    done = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" >&-', script], capture_output=True, text=True,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-500:]


def test_outputs_in_a_place_that_cannot_be_written_are_refused_before_work(tmp_path, monkeypatch):
    """A file output's folder, and a folder output's parent (where it is staged and renamed), must be writable;
    `-` (standard output) is no place. os.access stands in for a read-only mount (the tests run as root)."""
    import os

    import pytest

    from cosinegate.artifacts import refuse_clobbering
    from cosinegate.errors import CosineGateError

    locked = tmp_path / "locked"
    (locked / "int8").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != str(locked) and real_access(p, mode))
    with pytest.raises(CosineGateError, match="--json .*e.json lies in .*locked, which this user cannot write"):
        refuse_clobbering({}, files={"--json": locked / "e.json"})
    with pytest.raises(CosineGateError, match="--out .*int8 lies in .*locked, which this user cannot write"):
        refuse_clobbering({}, folders={"--out": locked / "int8"})
    monkeypatch.chdir(locked)
    refuse_clobbering({}, files={"--json": "-"}, folders={"--out": tmp_path / "fresh"})


def test_an_input_that_is_a_folder_or_missing_is_one_line(tmp_path):
    from cosinegate.artifacts import check_checkpoint_file, check_input_file
    from cosinegate.errors import CosineGateError

    (tmp_path / "f.onnx").write_bytes(b"x")
    (tmp_path / "run").mkdir()
    check_input_file(tmp_path / "f.onnx", "ONNX file")  # a file passes
    with pytest.raises(CosineGateError, match=r"^checkpoint .*run is a folder; pass the file in it \(e.g. .*run/best.pt\)\.$"):
        check_checkpoint_file(tmp_path / "run")
    with pytest.raises(CosineGateError, match=r"^ONNX file .* is a folder; pass a file\.$"):
        check_input_file(tmp_path, "ONNX file")
    with pytest.raises(CosineGateError, match=r"^checkpoint .*none.pt not found; train one with `cosinegate train`"):
        check_checkpoint_file(tmp_path / "none.pt")


def test_every_reader_of_a_missing_input_names_the_same_fix(tmp_path):
    """One table (artifacts.MISSING_FIX) holds the fix for each missing input: the commands' early check
    (cli.check_files) and the library's own readers say the same words."""
    from cosinegate import trtversion
    from cosinegate.artifacts import MISSING_FIX
    from cosinegate.cli import check_files
    from cosinegate.errors import CosineGateError
    from cosinegate.trt.manifest import read_engine_manifest

    onnx_checks = pytest.importorskip("cosinegate.onnx.checks")
    readers = {"ONNX file": onnx_checks.load_toolkit_onnx, "engine": read_engine_manifest,
               "calibration cache": trtversion.read_cache_text}
    assert sorted(readers) == sorted(set(MISSING_FIX) - {"checkpoint", "If cost table"})
    for what, reader in readers.items():
        missing = tmp_path / "none"
        expected = f"{what} {missing} not found; {MISSING_FIX[what]}."
        for call in (lambda: reader(missing), lambda: check_files({what: missing})):
            with pytest.raises(CosineGateError) as caught:
                call()
            assert str(caught.value) == expected
