"""CIFAR-10 pickle batches from strangers: a pickled object is refused unbuilt; batches beside the archive must be official."""

import pickle
import shutil

import pytest
from conftest import within

from cosinegate.data import cifar10
from cosinegate.errors import CosineGateError


class _WritesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _copy(fake_cifar_root, tmp_path):
    shutil.copytree(fake_cifar_root / cifar10.FOLDER, tmp_path / cifar10.FOLDER)
    return tmp_path / cifar10.FOLDER


@pytest.mark.parametrize("name", ["test_batch", "batches.meta"])
def test_a_crafted_batch_is_refused_without_running(fake_cifar_root, tmp_path, name):
    folder = _copy(fake_cifar_root, tmp_path)
    marker = tmp_path / "ran"
    with open(folder / name, "wb") as handle:
        pickle.dump({b"data": _WritesMarker(marker), b"labels": [], b"label_names": _WritesMarker(marker)}, handle, protocol=2)
    with pytest.raises(CosineGateError, match="(__builtin__|builtins).exec, refused unbuilt.*only the official archive"):
        cifar10.load_cifar10(tmp_path, allow_download=False)
    assert not marker.exists()
    pickle.load(open(folder / name, "rb"))  # control: the plain unpickler does run it
    assert marker.exists()


def test_batches_beside_a_foreign_archive_are_refused(fake_cifar_root, tmp_path, monkeypatch):
    folder = _copy(fake_cifar_root, tmp_path)
    cifar10.load_cifar10(tmp_path, allow_download=False)  # no archive: the batches are read as they are
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"not the archive")
    with pytest.raises(CosineGateError, match="is not the official CIFAR-10 archive"):
        cifar10.load_cifar10(tmp_path, allow_download=False)
    monkeypatch.setattr(cifar10, "MD5", cifar10._md5(archive))  # pretend it is official: now the batches must match
    with pytest.raises(CosineGateError, match="data_batch_1 differs from the official archive"):
        cifar10.load_cifar10(folder, allow_download=False)
    monkeypatch.setattr(cifar10, "BATCH_MD5", {name: cifar10._md5(folder / name) for name in cifar10.BATCH_MD5})
    assert cifar10.check_official(folder)


@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta"])
def test_a_fifo_batch_is_refused_without_blocking(fake_cifar_root, tmp_path, name):
    import os

    folder = _copy(fake_cifar_root, tmp_path)
    os.remove(folder / name)
    os.mkfifo(folder / name)
    with within(5), pytest.raises(CosineGateError, match=f"{name} is missing or not a regular file"):
        cifar10.load_cifar10(tmp_path, allow_download=False)
