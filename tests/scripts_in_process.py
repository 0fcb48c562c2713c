"""Run a command script's main(argv) in this process, as `run_main` would run it (exit code, stdout, stderr).

A subprocess per case costs 1-2 s of imports; the trust and bad-input tables run dozens of cases.
"""

import contextlib
import importlib
import importlib.util
import io
from pathlib import Path

from conftest import ROOT

_LOADED = {}


def script(relpath):
    """The command module behind ROOT/relpath (e.g. 'deploy/bench.py' -> cosinegate.cli.bench); a checkout script
    that is not a command (calibration/data_loader.py, for Polygraphy's script loader) is loaded from its file."""
    name = Path(relpath).stem
    if importlib.util.find_spec(f"cosinegate.cli.{name}") is not None:
        return importlib.import_module(f"cosinegate.cli.{name}")
    if relpath not in _LOADED:
        spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / relpath)
        _LOADED[relpath] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_LOADED[relpath])
    return _LOADED[relpath]


def run(relpath, *argv):
    """(exit code, stdout, stderr) of `python relpath argv...` run in-process under cosinegate.cli.run_main.

    An exception other than CosineGateError is caught and its traceback returned in stderr with code
    'traceback', so a table of bad inputs can count it instead of stopping.
    """
    import traceback

    from cosinegate.cli import run_main

    main = script(relpath).main
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_main(lambda: main([str(a) for a in argv]), [str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        except Exception:  # noqa: BLE001 - recorded, the test decides
            code = "traceback"
            err.write(traceback.format_exc())
    return code, out.getvalue(), err.getvalue()
