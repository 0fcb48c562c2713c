"""A data root a checkpoint or graph records is a default for reading only: it never causes a download."""

import pytest
from scripts_in_process import run

from cosinegate.data import cifar10
from cosinegate.data.choice import DataOrigin, choose_data
from cosinegate.errors import CosineGateError
from cosinegate.training.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture()
def no_network(monkeypatch):
    """Record any download attempt instead of making it."""
    tried = []
    monkeypatch.setattr(cifar10, "download", lambda root: tried.append(root))
    monkeypatch.setattr(cifar10.urllib.request, "urlretrieve", lambda *a, **k: tried.append(a))
    return tried


def _pointing_at(src, dst, root):
    state = load_checkpoint(src)
    state["config"]["data"] = {**state["config"]["data"], "source": "cifar10", "root": str(root)}
    save_checkpoint(dst, **{k: v for k, v in state.items() if k != "format"})
    return dst


def test_a_recorded_cifar10_root_is_never_downloaded_into(tiny_checkpoint, tmp_path, no_network):
    foreign = tmp_path / "someone-elses-folder"
    foreign.mkdir()
    ckpt = _pointing_at(tiny_checkpoint, tmp_path / "evil.pt", foreign)
    code, _, err = run("train/evaluate.py", "--checkpoint", ckpt)
    assert code == 2 and "nothing is downloaded here" in err and "Traceback" not in err, err
    assert no_network == [] and list(foreign.iterdir()) == []


def test_choose_data_never_downloads_even_for_a_user_root(tmp_path, no_network):
    origin = DataOrigin("cifar10", str(tmp_path), tuple("abcdefghij"))
    with pytest.raises(CosineGateError, match="nothing is downloaded here"):
        choose_data(origin, log=None)
    with pytest.raises(CosineGateError, match="nothing is downloaded here"):
        choose_data(None, "cifar10", str(tmp_path), log=None)
    assert no_network == []
