"""Multi-file stages killed with SIGKILL before each rename/removal: what is left is old-whole or new-whole.

Each case forks this process; the child counts the file-system steps (os.replace, os.rename,
os.remove, the folder exchange) and kills itself with SIGKILL just before step N, for every N
until a child gets through untouched. The parent then checks what is on disk.
"""

import json
import os
import signal
import tarfile
import time
import types

import pytest

from cosinegate import artifacts

STEPS = ("replace", "rename", "remove")


def killed_before(step, operation):
    """Run operation() in a forked child killed by SIGKILL just before its `step`-th file-system step.

    True if the kill happened, False if the child finished first (every step passed)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            count = [0]

            def hooked(fn):
                def step_then(*args, **kwargs):
                    count[0] += 1
                    if count[0] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*args, **kwargs)
                return step_then

            for name in STEPS:
                setattr(os, name, hooked(getattr(os, name)))
            artifacts._exchange = hooked(artifacts._exchange)
            operation()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the child hung before step {step}")
        time.sleep(0.01)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the operation failed in the child"
    return False


def every_kill_point(operation, check, limit=30):
    """Kill before step 1, 2, ... until the operation completes; `check(killed_at)` after each. Returns the kills."""
    for step in range(1, limit):
        killed = killed_before(step, operation)
        check(step if killed else None)
        if not killed:
            return step - 1
    raise AssertionError("the operation never completed")


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else None


def test_calibrate_out_is_swapped_whole(tmp_path):
    from cosinegate.quant.calibrate import write_outputs

    out = tmp_path / "cal"

    def calibration(tag):
        return types.SimpleNamespace(files={"model.qdq.onnx": f"{tag} qdq".encode(), "model.qdq.conditional.onnx": f"{tag} cond".encode(),
                                            "calibration.cache": f"{tag} cache".encode()}, manifest={"run": tag})

    write_outputs(calibration("old"), out)
    old = folder_bytes(out)
    write_outputs(calibration("new"), tmp_path / "reference")
    new = folder_bytes(tmp_path / "reference")

    def check(killed_at):
        assert folder_bytes(out) in (old, new), killed_at  # never new graphs beside an old cache or manifest
        if killed_at is None:
            assert folder_bytes(out) == new
            assert sorted(p.name for p in tmp_path.iterdir()) == ["cal", "reference"]  # the staging folder went away

    assert every_kill_point(lambda: write_outputs(calibration("new"), out), check) >= 1  # the last run removed the killed runs' staging


def test_calibrate_out_refuses_a_folder_with_other_files(tmp_path):
    from cosinegate.errors import CosineGateError
    from cosinegate.quant.calibrate import write_outputs

    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "notes.txt").write_text("mine")
    with pytest.raises(CosineGateError, match="holds other files \\(notes.txt\\)"):
        write_outputs(types.SimpleNamespace(files={"calibration.cache": b"x"}, manifest={}), tmp_path / "cal")
    assert (tmp_path / "cal" / "notes.txt").read_text() == "mine"


def test_bundle_folder_and_archive_never_disagree(tmp_path):
    from cosinegate.manifests import BundleManifest
    from cosinegate.trt.bundle import make_bundle
    from cosinegate.trt.manifest import verify_bundle

    from cosinegate.trt.targets import load_target

    profile = load_target("jetson-orin")
    (tmp_path / "old.onnx").write_bytes(b"old graph")
    (tmp_path / "new.onnx").write_bytes(b"new graph")
    out = tmp_path / "engines"

    def make(tag):
        make_bundle(out, "tiny", profile, {"model.conditional.onnx": tmp_path / f"{tag}.onnx"}, f"echo {tag}\n",
                    BundleManifest(model="tiny", source=tag))

    make("old")
    folder, archive = out / "tiny-bundle", out / "tiny-bundle.tar.gz"

    def archived_run():
        with tarfile.open(archive) as tar:
            return json.load(tar.extractfile("tiny-bundle/manifest.json"))["source"]

    def check(killed_at):
        run = verify_bundle(folder).source  # always a whole bundle that verifies
        assert run in ("old", "new"), killed_at
        if archive.exists():
            assert archived_run() == run, killed_at  # an archive present is the same bundle as the folder
        if killed_at is None:
            assert run == "new" and archive.exists()

    assert every_kill_point(lambda: make("new"), check) >= 3


def test_export_pair_never_names_another_graph(tmp_path):
    from cosinegate.artifacts import sha256_bytes, sha256_file
    from cosinegate.onnx import matching_manifest, write_graph_and_manifest

    out = tmp_path / "m.onnx"
    write_graph_and_manifest(out, b"old graph", {"onnx_sha256": sha256_bytes(b"old graph"), "run": "old"})

    def check(killed_at):
        manifest = matching_manifest(out)
        if out.with_name("m.onnx.json").exists():
            assert manifest is not None, killed_at  # a manifest present names the graph beside it
        if killed_at is None:
            assert manifest["run"] == "new" and out.read_bytes() == b"new graph"

    new = {"onnx_sha256": sha256_bytes(b"new graph"), "run": "new"}
    assert every_kill_point(lambda: write_graph_and_manifest(out, b"new graph", new), check) >= 3
    assert sha256_file(out) == new["onnx_sha256"]
