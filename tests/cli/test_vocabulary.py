"""Issue 13: one vocabulary across the commands (--version, --json REPORT, the `cosinegate` entry point, --out DIR/)."""

import json
import subprocess

from conftest import PYTHON, ROOT, run_script, script_env

from cosinegate.cli import COMMANDS, EXPERIMENTS

PROBE = """
import contextlib, io, runpy, sys
from pathlib import Path
for script in sys.argv[1:]:
    sys.path.insert(0, str(Path(script).parent))
    for flag in ("--version", "--help"):
        sys.argv = [script, flag]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit:
                pass
        print(script, flag, repr(out.getvalue()))
"""


def test_every_command_has_version_and_json():
    from cosinegate import __version__

    scripts = [str(ROOT / s) for s in checkout_scripts().values()]
    done = subprocess.run([PYTHON, "-c", PROBE, *scripts], capture_output=True, text=True, cwd=ROOT, env=script_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for script in scripts:
        version = next(line for line in lines if line.startswith(f"{script} --version"))
        helptext = next(line for line in lines if line.startswith(f"{script} --help"))
        assert f"cosinegate {__version__}" in version, version
        assert "--json REPORT" in helptext, (script, helptext)


# scripts that are not toolkit commands, and why (a new script must be a command or be listed here)
NOT_COMMANDS = {
    "scripts/trt_evidence.py": "maintainer tool regenerating tests/data/ TensorRT evidence, not a user command",
    "scripts/bench_compact.py": "the compact form's benchmark (issue 26): prints a table, not a user command",
}


def test_every_script_is_a_command_with_version_and_json():
    """Every runnable script under deploy/, calibration/, train/, scripts/ is a `cosinegate` subcommand (so the
    --version/--json test above covers it), or is named in NOT_COMMANDS with its reason."""
    scripts = {str(p.relative_to(ROOT)) for folder in ("deploy", "calibration", "train", "scripts")
               for p in (ROOT / folder).glob("*.py") if 'if __name__ == "__main__":' in p.read_text()}
    assert scripts - set(checkout_scripts().values()) - set(NOT_COMMANDS) == set()
    assert set(NOT_COMMANDS) <= scripts  # no stale exemption
    assert set(checkout_scripts()) == set(COMMANDS.values())  # a checkout script for every command


def checkout_scripts():
    """{command module: the checkout script that runs it} (a script names `from cosinegate.cli.MODULE import main`)."""
    found = {}
    for folder in ("deploy", "calibration", "train"):
        for path in (ROOT / folder).glob("*.py"):
            for line in path.read_text().splitlines():
                if line.startswith("from cosinegate.cli.") and line.endswith(" import main"):
                    found[line.split()[1].rsplit(".", 1)[1]] = str(path.relative_to(ROOT))
    return found


def test_console_entry_point_runs_the_scripts():
    done = subprocess.run([PYTHON, "-m", "cosinegate", "export", "--version"], capture_output=True, text=True, cwd=ROOT,
                          env=script_env())
    assert done.returncode == 0 and done.stdout.startswith("cosinegate "), done.stderr
    listed = subprocess.run([PYTHON, "-m", "cosinegate"], capture_output=True, text=True, cwd=ROOT, env=script_env())
    assert listed.returncode == 2 and listed.stdout == ""  # no subcommand: the list with descriptions, as an error
    assert "  train          Train a CosineGate model" in listed.stderr and all(f"  {name} " in listed.stderr for name in COMMANDS)
    helped = subprocess.run([PYTHON, "-m", "cosinegate", "--help"], capture_output=True, text=True, cwd=ROOT, env=script_env())
    assert helped.returncode == 0 and helped.stdout == listed.stderr
    # new-user audit: the experiments (hours of training) are listed apart from the path to an engine
    rows = [line.split()[0] for line in helped.stdout.splitlines() if line.startswith("  ")]
    experiments = helped.stdout.index("experiments (")
    assert rows[-len(EXPERIMENTS):] == list(EXPERIMENTS) and set(rows) == set(COMMANDS)
    assert all(helped.stdout.index(f"  {name} ") > experiments for name in EXPERIMENTS)
    assert helped.stdout.index("  build-engine ") < experiments
    bad = subprocess.run([PYTHON, "-m", "cosinegate", "deploy"], capture_output=True, text=True, cwd=ROOT, env=script_env())
    assert bad.returncode == 2 and "unknown command 'deploy'" in bad.stderr
    typo = subprocess.run([PYTHON, "-m", "cosinegate", "expot"], capture_output=True, text=True, cwd=ROOT, env=script_env())
    assert typo.returncode == 2 and "unknown command 'expot' (did you mean export?)" in typo.stderr
    assert "cosinegate = cosinegate.cli:console_main" in (ROOT / "setup.cfg").read_text()


def test_export_into_a_folder(dyn_checkpoint, tmp_path):
    folder = tmp_path / "onnx"
    done = run_script("deploy/export_onnx.py", "--checkpoint", dyn_checkpoint, "--out", f"{folder}/", "--form", "masked",
                      "--json", tmp_path / "m.json")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["model.masked.onnx", "model.masked.onnx.json"]
    assert json.loads((tmp_path / "m.json").read_text())["form"] == "masked"
    again = run_script("deploy/export_onnx.py", "--checkpoint", dyn_checkpoint, "--out", folder, "--form", "flat")
    assert again.returncode == 0 and (folder / "model.flat.onnx").is_file(), again.stderr  # an existing folder, no slash


def test_test_image_counts_have_one_spelling_everywhere():
    """--test-images (old spellings --samples / --limit kept as aliases) in every command that takes a test-image count."""
    for script in ("deploy/bench.py", "deploy/parity.py", "deploy/force_gates.py", "calibration/evaluate_int8.py"):
        helptext = run_script(script, "--help").stdout
        assert "--test-images" in helptext, script


def test_help_shows_the_defaults():
    """Every flag with a default says it once: appended where its help does not already name it."""
    helptext = " ".join(run_script("deploy/parity.py", "--help").stdout.split())
    assert "onnxrt | trt (default: onnxrt)" in helptext and "(default 500; --samples is the old spelling)" in helptext
    assert "(default: 500)" not in helptext
    assert "(default: balanced)" in " ".join(run_script("train/train.py", "--help").stdout.split())
