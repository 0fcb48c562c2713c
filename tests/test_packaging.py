"""Issue 24: the package stands on its own.

A wheel built from the package files alone (no checkout beside it) carries the presets and the target
profiles, and its commands run from any folder; defaults name the current folder, never the package's;
`--help` needs only the base install (numpy); a missing optional module is one line naming the extra.
"""

import configparser
import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest
from conftest import PYTHON, ROOT, script_env

from cosinegate.cli import COMMANDS, EXTRA_OF_MODULE, run_main

# what the base install lacks: every optional module of setup.cfg's extras, and tomli (the profiles' reader
# falls back to tomllib or cosinegate.minitoml)
OPTIONAL = sorted({*EXTRA_OF_MODULE, "tomli"})
BLOCK = f"import sys\nfor name in {OPTIONAL!r}:\n    sys.modules[name] = None  # import raises ModuleNotFoundError\n"


def run_python(code, *args, cwd, env=None, timeout=300):
    return subprocess.run([PYTHON, "-c", code, *map(str, args)], cwd=cwd, env=env or script_env(), capture_output=True,
                          text=True, timeout=timeout)


# ---- the package in place (fast) ----


def test_every_subcommands_help_needs_only_the_base_install(tmp_path):
    probe = BLOCK + (
        "import contextlib, io\n"
        "from cosinegate.cli import COMMANDS, console_main\n"
        "for name in COMMANDS:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            console_main([name, '--help'])\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code in (0, None), (name, exc.code)\n"
        "    assert out.getvalue().startswith('usage: cosinegate ' + name), (name, out.getvalue()[:200])\n"
        "    print('ok', name)\n"
    )
    done = run_python(probe, cwd=tmp_path, env=script_env(PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [word for name in COMMANDS for word in ("ok", name)]


# a command line per command whose input file is missing, and the words its refusal must hold
MISSING_INPUT = {
    "evaluate": (["--checkpoint", "nope.pt"], "checkpoint nope.pt not found"),
    "export": (["--checkpoint", "nope.pt", "--out", "model.onnx"], "checkpoint nope.pt not found"),
    "parity": (["--checkpoint", "nope.pt", "--onnx", "model.onnx"], "checkpoint nope.pt not found"),
    "calibrate": (["--checkpoint", "nope.pt"], "checkpoint nope.pt not found"),
    "evaluate-int8": (["--checkpoint", "nope.pt"], "checkpoint nope.pt not found"),
    "build-engine": (["--target", "jetson-orin", "--onnx", "nope.onnx"], "ONNX file nope.onnx not found"),
    "bench": (["--onnx", "nope.onnx"], "ONNX file nope.onnx not found"),
    "force-gates": (["--checkpoint", "nope.pt", "--out", "forced.pt"], "checkpoint nope.pt not found"),
    "gpu-gate-sync": (["--checkpoint", "nope.pt"], "checkpoint nope.pt not found"),
    "train": (["--config", "nope.yaml", "--out", "run"], "config file nope.yaml not found"),
}


def test_a_missing_input_file_is_refused_before_the_optional_modules_load(tmp_path):
    """The check comes first: "not found" in a fraction of a second, not after seconds of torch and onnx imports
    (here they are absent, so a command that imported one first would name the missing extra instead)."""
    probe = BLOCK + (
        "import contextlib, io, json\n"
        "from cosinegate.cli import console_main\n"
        "for name, (argv, _) in json.loads(sys.argv[1]).items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            console_main([name, *argv])\n"
        "        except SystemExit as exc:\n"
        "            print(name, exc.code, json.dumps(err.getvalue()))\n"
    )
    done = run_python(probe, json.dumps(MISSING_INPUT), cwd=tmp_path, env=script_env(PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {name: (int(code), json.loads(err)) for name, code, err in (line.split(" ", 2) for line in done.stdout.splitlines())}
    assert sorted(lines) == sorted(MISSING_INPUT)
    for name, (code, err) in lines.items():
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), (name, err)
        assert MISSING_INPUT[name][1] in err, (name, err)
    assert not [p.name for p in tmp_path.iterdir()]  # nothing written


def test_a_missing_onnxruntime_is_named_before_torch_loads(tmp_path):
    """New-user audit: parity without onnxruntime said so after ~50 s of torch and data loading; each command that
    needs it now looks for it (cli.check_modules) right after its file checks."""
    probe = (
        "import contextlib, io, sys\n"
        "sys.modules['onnxruntime'] = None\n"
        "from cosinegate.cli import console_main\n"
        "argv = {'parity': ['--onnx', 'm.onnx'], 'calibrate': ['--out', 'cal'], 'evaluate-int8': []}\n"
        "for name, rest in argv.items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            console_main([name, '--checkpoint', 'c.pt', *rest])\n"
        "        except SystemExit as exc:\n"
        "            print(name, exc.code, 'torch' in sys.modules, err.getvalue().strip())\n"
    )
    (tmp_path / "c.pt").write_bytes(b"not read")
    (tmp_path / "m.onnx").write_bytes(b"not read")
    done = run_python(probe, cwd=tmp_path, env=script_env(PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["parity", "calibrate", "evaluate-int8"], lines
    for line in lines:
        assert line.split(" ", 3)[1:3] == ["2", "False"], line
        assert line.endswith("error: this command needs onnxruntime: pip install onnxruntime (or '.[deploy]' in the "
                             "toolkit's checkout)"), line


def test_check_modules_finds_modules_without_importing_them(tmp_path, monkeypatch):
    """A folder named like a missing module in the current folder is not that module (`export --out onnx/` makes one);
    a stand-in already in sys.modules counts as present; a name outside EXTRA_OF_MODULE is a programming error."""
    import types

    from cosinegate.cli import check_modules
    from cosinegate.errors import CosineGateError

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    (tmp_path / "tensorrt").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CosineGateError, match="^this command needs tensorrt: TensorRT comes with JetPack"):
        check_modules("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # __spec__ None: find_spec raises
    check_modules("tensorrt")
    with pytest.raises(ValueError, match="not an optional module"):
        check_modules("numpy")


def test_calibrate_from_a_cache_needs_no_onnxruntime(tmp_path):
    """The cache holds the ranges ONNX Runtime would collect: calibrate --cache-in gets past the module check without it."""
    probe = (
        "import contextlib, io, sys\n"
        "sys.modules['onnxruntime'] = None\n"
        "from cosinegate.cli import console_main\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    try:\n"
        "        console_main(['calibrate', '--checkpoint', 'c.pt', '--cache-in', 'calibration.cache', '--out', 'cal'])\n"
        "    except SystemExit as exc:\n"
        "        print(exc.code, err.getvalue().strip())\n"
    )
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "calibration.cache").write_text("TRT-8502-EntropyCalibration2\n")
    done = run_python(probe, cwd=tmp_path, env=script_env(PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("2 error: checkpoint c.pt") and "onnxruntime" not in done.stdout, done.stdout


def test_a_missing_extra_is_one_line_naming_the_extra(tmp_path):
    code = "import sys\nsys.modules['torch'] = None\nfrom cosinegate.cli import console_main\nsys.exit(console_main(sys.argv[1:]))"
    (tmp_path / "model.pt").write_bytes(b"not read: torch is missing")
    done = run_python(code, "evaluate", "--checkpoint", tmp_path / "model.pt", cwd=tmp_path,
                      env=script_env(PYTHONPATH=ROOT))
    assert done.returncode == 2
    assert done.stderr == ("error: this command needs torch: pip install torch --index-url https://download.pytorch.org/whl/cpu "
                           "(the CPU build; with a GPU, PyTorch's CUDA build), then '.[training]' in the toolkit's checkout\n")


@pytest.mark.parametrize("module, extra", [("onnxruntime", "deploy"), ("tensorrt", "trt"), ("yaml", "training"),
                                           ("onnx_graphsurgeon", "deploy"), ("onnx", "deploy")])
def test_run_main_names_the_extra_of_a_missing_module(module, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)

    def main():
        __import__(module)

    with pytest.raises(SystemExit) as stop:
        run_main(main)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    # the module's own pip line works for a checkout and a wheel install alike (the package is not on PyPI); TensorRT
    # comes with JetPack; onnx, which a board needs too, only through the extras that pin numpy for JetPack
    pip = {"yaml": "pyyaml", "onnx_graphsurgeon": "onnx-graphsurgeon"}.get(module, module)
    hint = {"tensorrt": "TensorRT comes with JetPack on a Jetson",
            "onnx": "pip install '.[deploy]' in the toolkit's checkout; on a Jetson '.[device]' (its numpy pins suit JetPack's"
            }.get(module, f"pip install {pip} (or '.[{extra}]' in the toolkit's checkout)")
    assert err.count("\n") == 1 and err.startswith(f"error: this command needs {module}: {hint}")


def test_run_main_lets_other_missing_modules_through(monkeypatch):
    """A missing module that no extra installs is a bug or a broken install: its traceback stays."""
    monkeypatch.setitem(sys.modules, "cosinegate.no_such_module", None)
    with pytest.raises(ModuleNotFoundError):
        run_main(lambda: __import__("cosinegate.no_such_module"))


def test_each_optional_module_is_installed_by_its_extra():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = {name: {re.split(r"[<>=!;\[ ]", line.strip())[0].lower() for line in text.splitlines() if line.strip()}
              for name, text in cfg["options.extras_require"].items()}
    distribution = {"PIL": "pillow", "yaml": "pyyaml", "onnx_graphsurgeon": "onnx-graphsurgeon"}
    for module, extra in EXTRA_OF_MODULE.items():
        assert distribution.get(module, module).lower() in extras[extra], (module, extra)


def test_presets_and_profiles_are_package_data_and_the_checkout_paths_link_to_them():
    import cosinegate
    from cosinegate.config import CONFIG_DIR, load_config
    from cosinegate.trt.targets import DEFAULT_TARGETS_DIR, load_target

    package = __import__("pathlib").Path(cosinegate.__file__).resolve().parent
    assert CONFIG_DIR.parent == package and DEFAULT_TARGETS_DIR.parent == package / "trt"
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "presets/*.yaml" in cfg["options.package_data"]["cosinegate"]
    assert "profiles/*.toml" in cfg["options.package_data"]["cosinegate.trt"]
    # the paths users (and the CPU campaign's protocol, train/configs/teacher.yaml) know keep resolving
    assert (ROOT / "train" / "configs").resolve() == CONFIG_DIR
    assert (ROOT / "engines" / "targets").resolve() == DEFAULT_TARGETS_DIR
    assert load_config(str(ROOT / "train" / "configs" / "teacher.yaml")) == load_config("teacher")
    by_path, by_name = load_target(str(ROOT / "engines" / "targets" / "jetson-orin")), load_target("jetson-orin")
    assert by_path.source.resolve() == by_name.source and by_path.name == by_name.name


def test_the_default_run_is_under_the_current_folder(tiny_checkpoint, tmp_path, monkeypatch):
    from cosinegate import defaults

    assert not defaults.DEFAULT_RUN.is_absolute()
    run = tmp_path / "runs" / "pipeline" / "balanced-resnet20"
    run.mkdir(parents=True)
    shutil.copy(tiny_checkpoint, run / "best.pt")
    monkeypatch.chdir(tmp_path)
    assert defaults.default_checkpoint().resolve() == run / "best.pt"  # found there, nothing trained


def test_training_the_default_model_reports_to_the_commands_log(tmp_path, monkeypatch, capsys):
    """Dead-code audit: default_checkpoint printed its line itself, whatever log the command passed (build_engine
    --quiet, a pipeline collecting its lines), and trained without one (no line per epoch)."""
    import cosinegate.training.loop as loop
    from cosinegate import defaults

    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(loop, "train", lambda config, out, resume, log: calls.append((config["optim"]["epochs"], log)))
    lines = []
    defaults.default_checkpoint(lines.append)
    assert lines[0].startswith("no --checkpoint given: training the embedded default model into ")
    assert calls == [(defaults.DEFAULT_RECIPE["epochs"], lines.append)] and capsys.readouterr().out == ""


# ---- the package installed from a wheel, run from a folder outside the checkout ----


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of the package files alone (copied away from the checkout), installed with --target into a folder;
    returns (site folder, environment putting only it before the interpreter's own site-packages)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT / "cosinegate", source / "cosinegate", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", base / "dist",
                            source], capture_output=True, text=True, cwd=base, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = (base / "dist").glob("cosinegate_edge-*.whl")
    site = base / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", site, wheel],
                          capture_output=True, text=True, cwd=base, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # the installed copy is found first (the checkout's editable finder comes after the path entries)
    return site, script_env(PYTHONPATH=site)


@pytest.mark.slow
def test_the_wheel_carries_the_presets_and_the_profiles(installed):
    site, _ = installed
    assert sorted(p.name for p in (site / "cosinegate" / "presets").glob("*.yaml")) == \
        sorted(p.name for p in (ROOT / "cosinegate" / "presets").glob("*.yaml"))
    assert sorted(p.name for p in (site / "cosinegate" / "trt" / "profiles").glob("*.toml")) == \
        sorted(p.name for p in (ROOT / "cosinegate" / "trt" / "profiles").glob("*.toml"))


@pytest.mark.slow
def test_the_installed_package_runs_outside_the_checkout(installed, tmp_path):
    site, env = installed
    where = run_python("import json, sys, cosinegate, cosinegate.config as c, cosinegate.trt.targets as t\n"
                       "print(json.dumps([cosinegate.__file__, str(c.CONFIG_DIR), str(t.DEFAULT_TARGETS_DIR), sys.path]))",
                       cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    package, presets, profiles, path = json.loads(where.stdout)
    assert package == str(site / "cosinegate" / "__init__.py")
    assert presets.startswith(str(site)) and profiles.startswith(str(site))
    assert str(ROOT) not in path and "" not in path[1:]  # neither the checkout nor '' beyond -c's own entry
    console = subprocess.run([site / "bin" / "cosinegate", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
    assert console.returncode == 0 and "build-engine" in console.stdout, console.stderr
    helptext = run_python("import sys; from cosinegate.cli import console_main; sys.exit(console_main(sys.argv[1:]))",
                          "train", "--config", "teacher", "--help", cwd=tmp_path, env=env)
    assert helptext.returncode == 0 and "--config" in helptext.stdout, helptext.stderr
    # a preset is read from the package data; an unknown one lists the presets there
    config = run_python("from cosinegate.config import load_config; print(load_config('teacher')['name'])", cwd=tmp_path,
                        env=env)
    assert config.returncode == 0 and config.stdout.strip() == "teacher", config.stderr
    unknown = subprocess.run([PYTHON, "-m", "cosinegate", "train", "--config", "fastest", "--out", tmp_path / "run"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr, unknown.stderr
    assert "unknown config or preset 'fastest'" in unknown.stderr and "balanced" in unknown.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_installed_package_writes_a_bundle_from_any_folder(installed, tiny_checkpoint, tmp_path):
    _, env = installed
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    done = subprocess.run([PYTHON, "-m", "cosinegate", "build-engine", "--target", "jetson-orin", "--checkpoint",
                           tiny_checkpoint, "--out", "out"], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    bundle, = (folder / "out").glob("*-bundle")  # no TensorRT for an Orin here: the bundle to build it on the board
    from cosinegate.trt.manifest import verify_bundle

    manifest = verify_bundle(bundle)
    assert manifest.target == "jetson-orin" and "build_on_device.sh" in manifest.files
    assert (bundle / "jetson-orin.toml").read_text() == (ROOT / "cosinegate" / "trt" / "profiles" / "jetson-orin.toml").read_text()
