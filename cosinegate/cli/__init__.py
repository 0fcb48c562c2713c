"""Shared pieces of the command scripts: error printing, output checks, and the `cosinegate` entry point (the shared
flags and argument groups: cosinegate/cli/args.py)."""

import sys
from pathlib import Path

# `cosinegate SUBCOMMAND ...` runs the script (the scripts stay the primary interface)
COMMANDS = {  # subcommand: module of cosinegate.cli (the checkout's scripts call the same main), in workflow order
    "train": "train",
    "evaluate": "evaluate",
    "export": "export_onnx",
    "parity": "parity",
    "calibrate": "calibrate",
    "evaluate-int8": "evaluate_int8",
    "build-engine": "build_engine",
    "bench": "bench",
    "force-gates": "force_gates",
    "reproduce": "reproduce",
    "bench-train": "bench_train",
    "gpu-gate-sync": "gpu_gate_sync",
    "campaign": "campaign",
    "cpu-campaign": "cpu_campaign",
}
# the experiments behind docs/results.md: listed apart in `cosinegate --help` (most train for hours)
EXPERIMENTS = ("reproduce", "bench-train", "gpu-gate-sync", "campaign", "cpu-campaign")


# optional modules -> the extra of setup.cfg that installs them (the base install is numpy only);
# tests/test_packaging.py checks this against setup.cfg's [options.extras_require]
EXTRA_OF_MODULE = {
    "torch": "training", "PIL": "training", "tqdm": "training", "yaml": "training", "matplotlib": "training",
    "onnx": "deploy", "onnxruntime": "deploy", "onnxscript": "deploy", "onnx_graphsurgeon": "deploy", "polygraphy": "deploy",
    "tensorrt": "trt", "pycuda": "trt",
}


def missing_extra(exc):
    """The one-line message for a ModuleNotFoundError of a known optional module, else None."""
    module = (getattr(exc, "name", None) or "").split(".")[0]
    return missing_module_line(module) if module in EXTRA_OF_MODULE else None


def missing_module_line(module):
    """"this command needs MODULE: how to install it" for a module of EXTRA_OF_MODULE."""
    from cosinegate.lazy import install_line

    return f"this command needs {module}: {install_line(EXTRA_OF_MODULE[module], module)}"


def check_modules(*names):
    """Before the heavy imports: each optional module in ``names`` (EXTRA_OF_MODULE's) is installed (found, not
    imported), else missing_extra's line at once, not after torch and the data loaded. A folder of that name in the
    current folder (`export --out onnx/`) is a namespace package, not the module: it counts as missing."""
    import importlib.util

    from cosinegate.errors import CosineGateError

    unknown = [name for name in names if name not in EXTRA_OF_MODULE]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an optional module of EXTRA_OF_MODULE")
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except ValueError:  # imported already, without a __spec__ (a stand-in): present
            continue
        if spec is None or spec.origin is None:
            raise CosineGateError(missing_module_line(name))


def json_to_stdout(argv):
    """Whether ``argv`` asks for the report on stdout (--json -, or parity's old spelling --report -)."""
    names = ("--json", "--report")
    return any(a in names and b == "-" for a, b in zip(argv, argv[1:])) or any(a in {n + "=-" for n in names} for a in argv)


def run_main(main, argv=None):
    """Run main(); print a CosineGateError, or a missing optional module (with the extra that installs it), as one
    line and exit 2. With --json - in ``argv`` (default sys.argv) the report alone goes to stdout, every other
    line to stderr."""
    import contextlib

    from cosinegate.artifacts import report_on_stdout
    from cosinegate.errors import CosineGateError

    argv = sys.argv[1:] if argv is None else argv
    try:
        with report_on_stdout() if json_to_stdout(argv) else contextlib.nullcontext():
            code = main()
    except CosineGateError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def one_line(text):
    """`text` with control characters (a newline in a file name) escaped, so an error is one line."""
    return "".join(c if ord(c) >= 32 and ord(c) != 127 else c.encode("unicode_escape").decode("ascii") for c in text)


MAY_BE_MISSING = ("timing cache",)  # an input file a build writes when it is missing


def check_files(inputs=None, **outputs):
    """Before any work (and before the heavy imports): the command's ``inputs`` ({what: path}; None skipped) are
    files that exist, and its output files (flag name -> path) are not folders, links or other non-regular files, nor
    one of its inputs."""
    from pathlib import Path

    from cosinegate.artifacts import check_checkpoint_file, check_input_file, refuse_clobbering
    from cosinegate.errors import CosineGateError

    for what, path in (inputs or {}).items():
        if path is None or what in MAY_BE_MISSING:
            continue
        if what == "checkpoint":
            check_checkpoint_file(path)
        else:
            check_input_file(path, what)
    for flag, path in outputs.items():
        if path is not None and Path(path).is_dir():
            raise CosineGateError(f"--{flag.replace('_', '-')} {path} is a folder; name a file to write.")
    refuse_clobbering(inputs or {}, files={f"--{flag.replace('_', '-')}": path for flag, path in outputs.items()})


def check_output_folder(flag, path, inputs=None):
    """Before any work: refuse an output folder that is a link or a file, or that holds one of `inputs` ({what: path})."""
    from cosinegate.artifacts import refuse_clobbering

    refuse_clobbering(inputs or {}, folders={flag: path})


def command_log(args, polygraphy=True):
    """The cosinegate.progress.Log of a command's --quiet/--verbose (add_report_flags(..., verbosity=True)), with
    Polygraphy's logger set to the same level where the command uses Polygraphy."""
    from cosinegate.progress import Log

    log = Log.of(getattr(args, "quiet", False), getattr(args, "verbose", False))
    if polygraphy:
        log.apply_to_polygraphy()
    return log


def pick_device(name, threads=None):
    """add_device_flags' --device (refused where torch sees no CUDA GPU) and, where given, --threads: torch's
    intra-op threads set to it."""
    import torch

    from cosinegate.errors import CosineGateError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CosineGateError("--device cuda asked for, but this torch build sees no CUDA GPU; use --device cpu.")
    if threads:
        torch.set_num_threads(threads)
    return name


def _summary(module):
    """The first line of a command module's docstring (its one-line description), read without importing it."""
    import ast

    path = Path(__file__).with_name(f"{module}.py")
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (OSError, SyntaxError):
        doc = None
    return (doc or module).strip().splitlines()[0]


def console_main(argv=None):
    """`cosinegate SUBCOMMAND [options]`: run that command's main with the options (see COMMANDS)."""
    import importlib

    from cosinegate import __version__

    argv = sys.argv[1:] if argv is None else list(argv)
    usage = "usage: cosinegate {" + ",".join(COMMANDS) + "} [options]   (cosinegate SUBCOMMAND --help for each)"
    if not argv or argv[0] in ("-h", "--help"):
        stream = sys.stdout if argv else sys.stderr
        print(usage, file=stream)
        for title, names in (("from a checkpoint to an engine:", [n for n in COMMANDS if n not in EXPERIMENTS]),
                             ("experiments (docs/results.md; most train for hours):", EXPERIMENTS)):
            print(title, file=stream)
            for name in names:
                print(f"  {name:14s} {_summary(COMMANDS[name])}", file=stream)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"cosinegate {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        print(f"error: unknown command {argv[0]!r}{f' (did you mean {close[0]}?)' if close else ''}; {usage}", file=sys.stderr)
        return 2
    sys.argv = [f"cosinegate {argv[0]}", *argv[1:]]
    main = importlib.import_module(f"cosinegate.cli.{COMMANDS[argv[0]]}").main
    run_main(lambda: main(argv[1:]), argv[1:])
    return 0
