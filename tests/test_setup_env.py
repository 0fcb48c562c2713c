"""scripts/setup_env.sh: the desktop side needs Python 3.10+ (torch 2.13); an older interpreter gets one line and no
.venv."""

import shutil
import subprocess

import pytest
from conftest import ROOT
from jetpack_rehearsal import pyenv_python


def test_an_interpreter_too_old_for_torch_is_refused_before_any_venv(tmp_path):
    python38 = pyenv_python("3.8")
    if python38 is None:
        pytest.skip("no Python 3.8 from pyenv here")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts/setup_env.sh", tmp_path / "scripts")
    done = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHON": str(python38)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not (tmp_path / ".venv").exists()
    assert done.stderr.startswith("error: ") and "is Python 3.8." in done.stderr and "needs 3.10 or newer" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_an_interpreter_that_is_not_there_is_named(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts/setup_env.sh", tmp_path / "scripts")
    done = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHON": "python9.9"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: python9.9 not found; install Python 3.10")
    assert not (tmp_path / ".venv").exists()
