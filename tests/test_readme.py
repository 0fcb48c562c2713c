"""The README's commands exist: every script it names answers --help without TensorRT or a GPU."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SCRIPTS = sorted(set(re.findall(r"python ((?:train|deploy|calibration)/\w+\.py)", README)))


def test_readme_names_the_two_fresh_machine_commands():
    assert "bash scripts/pipeline.sh" in README and "bash scripts/test.sh" in README
    assert (ROOT / "scripts/pipeline.sh").is_file() and (ROOT / "scripts/test.sh").is_file()
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_readme_names_scripts():
    assert len(SCRIPTS) >= 9, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script):
    assert (ROOT / script).is_file(), f"README names {script}, which does not exist"
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
