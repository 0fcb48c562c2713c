"""Two writers on one run folder, whole lines in metrics.jsonl and bench CSVs, temporaries of killed runs cleaned up."""

import errno
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import ROOT, tiny_config
from scripts_in_process import run

from cosinegate import artifacts
from cosinegate.errors import CosineGateError

HOLD = ("import sys, time; sys.path.insert(0, {root!r}); from cosinegate.artifacts import folder_lock\n"
        "with folder_lock({folder!r}, 'test'):\n    print('locked', flush=True); time.sleep(60)")
TRY = ("import sys; sys.path.insert(0, {root!r}); from cosinegate.artifacts import folder_lock\n"
       "from cosinegate.errors import CosineGateError\n"
       "try:\n    with folder_lock({folder!r}, 'test'): print('free')\nexcept CosineGateError: print('held')")


def _try_lock(folder):
    return subprocess.run([sys.executable, "-c", TRY.format(root=str(ROOT), folder=str(folder))], capture_output=True,
                          text=True, timeout=30).stdout.strip()


def test_a_second_train_on_the_same_out_is_refused(tmp_path, fake_cifar_root):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), folder=str(out))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run("train/train.py", "--data", "cifar10", "--data-root", fake_cifar_root, "--epochs", "1",
                           "--no-progress", "--out", out)
        assert code == 2 and "is in use by another training run" in err and "Traceback" not in err, err
        assert list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()


def test_train_holds_the_lock_while_it_runs(tmp_path, fake_cifar_root, monkeypatch):
    from cosinegate.training import loop

    seen = []

    def probe(self, epoch):
        seen.append(_try_lock(self.out))
        raise CosineGateError("stop here")

    monkeypatch.setattr(loop.Trainer, "train_epoch", probe)
    with pytest.raises(CosineGateError, match="stop here"):
        loop.train(tiny_config(fake_cifar_root), tmp_path / "run", progress=False)
    assert seen == ["held"] and _try_lock(tmp_path / "run") == "free"


def test_read_only_out_is_refused_before_the_first_epoch(tmp_path, fake_cifar_root, monkeypatch):
    from cosinegate.training import loop

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(loop.Trainer, "train_epoch", lambda *a: pytest.fail("an epoch ran"))
    monkeypatch.setattr(loop.tempfile, "TemporaryFile", read_only)  # as root, chmod would not stop the writes
    with pytest.raises(CosineGateError, match="cannot write .*ro \\(read-only file system\\)"):
        loop.train(tiny_config(fake_cifar_root), tmp_path / "ro", progress=False)


def test_resume_survives_a_partial_last_metrics_line(tiny_run, tmp_path, fake_cifar_root):
    from cosinegate.training.loop import train
    from cosinegate.training.metrics_log import read_metrics

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    whole = read_metrics(run_dir / "metrics.jsonl")
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "train_lo')  # a kill in the middle of a line
    summary = train(tiny_config(fake_cifar_root, epochs=2), run_dir, resume=True, progress=False)
    assert summary["epochs"] == 2 and read_metrics(run_dir / "metrics.jsonl") == whole


def test_append_line_writes_whole_lines_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "bench.csv"
    path.write_text("a,b\n1,2\n3,")  # an earlier writer's partial row
    artifacts.append_line(path, "5,6")
    assert path.read_text() == "a,b\n1,2\n5,6\n"
    real_write = os.write

    def disk_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(CosineGateError, match="no space left"):
        artifacts.append_line(path, "7,8,9,10")
    assert path.read_text() == "a,b\n1,2\n5,6\n"


def test_bench_csv_rows_are_whole(tmp_path, monkeypatch):
    from cosinegate.bench import report

    path = tmp_path / "b.csv"
    row = {"time": "t", "device": "cpu, with a comma", "backend": "onnxrt", "mean_ms": 1.5}
    report.append_csv(path, row)
    with open(path, "a") as handle:
        handle.write("t,cpu")  # killed mid-row
    report.append_csv(path, row)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and lines[1] == lines[2] and '"cpu, with a comma"' in lines[1]


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".last.pt.{dead}.abc.tmp"
    live = tmp_path / f".last.pt.{alive}.def.tmp"
    stale.write_bytes(b"x" * 100)
    live.write_bytes(b"y")
    artifacts.atomic_write_bytes(tmp_path / "last.pt", b"new")
    assert not stale.exists() and live.exists() and (tmp_path / "last.pt").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.pt"]


def test_bench_removes_work_folders_of_killed_runs(tmp_path):
    stale = tempfile.mkdtemp(prefix=f"cg-bench.{_dead_pid()}.")
    mine_before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"cg-bench.{os.getpid()}.")}
    (tmp_path / "broken.onnx").write_bytes(b"not an ONNX graph")
    code, _, err = run("deploy/bench.py", "--onnx", tmp_path / "broken.onnx")
    assert code == 2 and "Traceback" not in err, err
    assert not os.path.exists(stale)
    assert {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(f"cg-bench.{os.getpid()}.")} == mine_before


def test_write_errors_are_one_line(tmp_path):
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(CosineGateError, match="is a directory"):
        artifacts.atomic_write_bytes(tmp_path / "dir.onnx", b"x")
    (tmp_path / "file").write_text("")
    with pytest.raises(CosineGateError, match="cannot write .*a file is in the way"):
        artifacts.atomic_write_bytes(tmp_path / "file" / "x.onnx", b"x")
