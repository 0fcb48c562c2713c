"""The README's commands exist: every script it names answers --help without TensorRT or a GPU."""

import functools
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


@functools.cache
def _help(script):
    """The script's --help run (once per script for all tests)."""
    return subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script):
    assert (ROOT / script).is_file(), f"README names {script}, which does not exist"
    done = _help(script)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def _flags_by_script():
    """{script: flags written after it on the same README line (up to the next script named)}."""
    flags = {}
    for line in README.splitlines():
        parts = re.split(r"python ((?:train|deploy|calibration)/\w+\.py)", line)
        for script, segment in zip(parts[1::2], parts[2::2]):
            flags.setdefault(script, set()).update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", segment))
    return flags


@pytest.mark.parametrize("script", SCRIPTS)
def test_readme_flags_exist(script):
    """Every --flag the README writes after a script is one that script accepts."""
    unknown = sorted(f for f in _flags_by_script().get(script, ()) if not re.search(rf"{f}(?![\w-])", _help(script).stdout))
    assert not unknown, f"README gives {script} flags its --help does not list: {unknown}"
