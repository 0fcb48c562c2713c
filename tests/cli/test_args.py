"""One argument vocabulary: every command builds its shared flags from the groups of cosinegate/cli/args.py, so a flag
that means the same thing has one spelling, one help text and one group everywhere; an old spelling still works and
says which flag replaces it."""

import argparse
import ast
import importlib
import sys

import pytest

from cosinegate.cli import COMMANDS, args

# shared flag -> the group (title) that adds it
GROUP_OF_FLAG = {"--checkpoint": "model", "--data": "data", "--data-root": "data", "--subset": "data",
                 "--image-size": "data", "--out": "output", "--json": "report", "--quiet": "report",
                 "--no-progress": "report", "--verbose": "report", "--device": "device", "--threads": "device"}
# shared flags a command takes outside the shared group, and why
EXEMPT = {("campaign", "--subset"): "a plain int training subset beside --data-tar, not a data source flag"}
# flags whose help is the same text on every command that takes them
SAME_HELP = ("--checkpoint", "--data", "--subset", "--image-size", "--json", "--device")
# (command, old spelling, new flag, value, the required flags around it)
RENAMED = [
    ("parity", "--report", "json", "r.json", ["--checkpoint", "c.pt", "--onnx", "m.onnx"]),
    ("parity", "--samples", "test_images", "7", ["--checkpoint", "c.pt", "--onnx", "m.onnx"]),
    ("bench", "--samples", "test_images", "7", []),
    ("force-gates", "--samples", "test_images", "7", ["--checkpoint", "c.pt", "--out", "f.pt"]),
    ("gpu-gate-sync", "--samples", "test_images", "7", []),
    ("evaluate-int8", "--limit", "test_images", "7", ["--checkpoint", "c.pt"]),
    ("evaluate-int8", "--num-images", "calib_images", "7", ["--checkpoint", "c.pt"]),
    ("calibrate", "--num-images", "calib_images", "7", ["--checkpoint", "c.pt"]),
]


class _Parsed(Exception):
    pass


def parser_of(command, monkeypatch):
    """The argparse parser a command builds (its parse_args, or its main where the parser lives there), unparsed."""

    def stop(self, argv=None, namespace=None):
        raise _Parsed(self)

    module = importlib.import_module(f"cosinegate.cli.{COMMANDS[command]}")
    with monkeypatch.context() as patch:
        patch.setattr(args.ArgumentParser, "parse_args", stop)
        with pytest.raises(_Parsed) as parsed:
            (getattr(module, "parse_args", None) or module.main)([])
    return parsed.value.args[0]


def parse(command, argv):
    """The command's own parser (parser_of) run on argv."""
    return parser_of(command, pytest.MonkeyPatch()).parse_args(argv)


def flags_by_group(parser):
    """{flag: (its action, the title of the group that holds it)}."""
    found = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            for flag in action.option_strings:
                found[flag] = (action, group.title)
    return found


@pytest.fixture(scope="module")
def parsers():
    patch = pytest.MonkeyPatch()
    try:
        yield {command: flags_by_group(parser_of(command, patch)) for command in COMMANDS}
    finally:
        patch.undo()


def test_shared_flags_come_from_the_shared_groups(parsers):
    wrong = [f"{command} {flag}: in group {title!r}, not {GROUP_OF_FLAG[flag]!r}"
             for command, flags in parsers.items() for flag, (_, title) in flags.items()
             if flag in GROUP_OF_FLAG and title != GROUP_OF_FLAG[flag] and (command, flag) not in EXEMPT]
    assert not wrong, "\n".join(wrong)
    assert all(flag in parsers[command] for command, flag in EXEMPT)  # no stale exemption


def test_every_command_has_json_report_with_one_help(parsers):
    for command, flags in parsers.items():
        action, title = flags["--json"]
        assert (action.help, action.metavar, title) == (args.JSON_HELP, "REPORT", "report"), command


@pytest.mark.parametrize("flag", SAME_HELP)
def test_a_shared_flag_has_one_help_text(parsers, flag):
    helps = {command: flags[flag][0].help for command, flags in parsers.items()
             if flag in flags and (command, flag) not in EXEMPT}
    assert len(helps) >= 2, helps  # shared by several commands, or not a shared flag
    if flag in ("--data", "--data-root"):  # the same text but for where the data comes from by default
        helps = {command: text.split(" (default")[0] for command, text in helps.items()}
    assert len(set(helps.values())) == 1, helps


def test_old_spellings_are_hidden_aliases_named_in_the_help(parsers):
    """An old spelling is a DeprecatedAlias, out of the usage line, but --help still names it (docs/ may use it)."""
    for command, old, _, _, _ in RENAMED:
        action, _ = parsers[command][old]
        assert isinstance(action, args.DeprecatedAlias) and action.help == argparse.SUPPRESS, (command, old)
        parser = parser_of(command, pytest.MonkeyPatch())
        assert old in parser.format_help(), (command, old)


@pytest.mark.parametrize("command, old, dest, value, required", RENAMED, ids=lambda v: v if isinstance(v, str) else None)
def test_an_old_spelling_works_and_names_the_new_flag(command, old, dest, value, required, capsys, monkeypatch):
    parsed = parse(command, [*required, old, value])
    expected = int(value) if dest != "json" else value
    assert getattr(parsed, dest) == expected
    err = capsys.readouterr().err
    new = next(a.option_strings[0] for a in parser_of(command, monkeypatch)._actions if a.dest == dest)
    assert err == f"note: {old} is deprecated; use {new}\n", err
    again = parse(command, [*required, new, value])  # the new spelling: the same value, no note
    assert getattr(again, dest) == expected and capsys.readouterr().err == ""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_misspelled_flag_is_named_before_a_missing_one(command, capsys):
    """argparse said "the following arguments are required: --checkpoint" for `--checkpiont x`, never naming the
    misspelling; every command now names it first, with the closest flag it has."""
    parser = parser_of(command, pytest.MonkeyPatch())
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--checkpiont", "x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "unrecognized arguments: --checkpiont x" in err, err
    has = "--checkpoint" in [o for a in parser._actions for o in a.option_strings]
    assert ("(did you mean --checkpoint?)" in err) == has, err


def test_an_old_spelling_keeps_the_default_of_the_new_flag():
    parsed = parse("parity", ["--checkpoint", "c.pt", "--onnx", "m.onnx"])
    assert parsed.test_images == 500 and parsed.json is None


def test_an_old_spelling_with_a_bad_value_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit) as stop:
        parse("bench", ["--samples", "0"])
    assert stop.value.code == 2 and "argument --samples: must be at least 1" in capsys.readouterr().err


def test_an_old_spelling_runs_through_main(capsys):
    """Through the `cosinegate` entry point too: gpu-gate-sync --samples (now --test-images) reaches main's check."""
    from cosinegate.cli import console_main

    with pytest.raises(SystemExit):
        console_main(["gpu-gate-sync", "--samples", "x"])
    assert "argument --samples: 'x' is not a whole number" in capsys.readouterr().err


def test_every_default_is_shown_once(parsers):
    """A flag with a default shows it in --help, also where it has no help text of its own; never twice."""
    for command in COMMANDS:
        text = parser_of(command, pytest.MonkeyPatch()).format_help()
        flat = " ".join(text.split())
        assert flat.count("(default: (default") == 0 and "default: None" not in flat, command
    bench_train = " ".join(parser_of("bench-train", pytest.MonkeyPatch()).format_help().split())
    assert "--backbone NAME backbone timed: resnet20, resnet32, resnet44, resnet56, resnet110, paper8, resnet18, resnet34, " \
           "resnet50 (default: resnet20)" in bench_train
    calibrate = " ".join(parser_of("calibrate", pytest.MonkeyPatch()).format_help().split())
    assert "calibration images (default: 0)" in calibrate  # a default of 0 is no switch's False


def test_only_commands_that_read_a_subset_offer_it(parsers):
    """--subset where a command subsets its images; calibrate and evaluate-int8 count theirs with --calib-images and
    --test-images, and the deploy and bench commands read none (a flag there would be ignored)."""
    assert sorted(c for c, flags in parsers.items() if "--subset" in flags) == ["campaign", "evaluate", "parity", "reproduce",
                                                                                "train"]


def test_usage_lines_in_the_docstrings_keep_their_line_breaks():
    """A backslash at a line's end in a (non-raw) docstring joins the lines in --help: it must be doubled."""
    for module in COMMANDS.values():
        source = importlib.import_module(f"cosinegate.cli.{module}").__file__
        text = open(source).read()
        written = ast.get_source_segment(text, ast.parse(text).body[0])
        assert written.count("\n") == ast.get_docstring(ast.parse(text), clean=False).count("\n"), module


def test_every_flag_says_what_it_does(parsers):
    """Every flag of every command has a line of help of its own (a shown default alone is not one); an old spelling
    is hidden (SUPPRESS) and named in its new flag's help instead."""
    silent = sorted(f"{command} {flag}" for command, flags in parsers.items() for flag, (action, _) in flags.items()
                    if not (action.help or "").strip() and not isinstance(action, argparse._HelpAction))
    assert not silent, "flags without help: " + ", ".join(silent)


def test_quiet_and_verbose_where_there_are_steps(parsers):
    """The commands with long steps take --quiet and --verbose; train keeps --quiet and --no-progress."""
    for command in ("build-engine", "calibrate", "parity", "bench", "export", "evaluate", "force-gates"):
        assert {"--quiet", "--verbose"} <= set(parsers[command]), command
    assert {"--quiet", "--no-progress"} <= set(parsers["train"])


def test_args_module_imports_only_the_standard_library_and_errors():
    """cosinegate/cli/args.py is imported by every --help: nothing beyond the standard library and cosinegate.errors
    (and the package's own __version__)."""
    tree = ast.parse(open(args.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside <= {"cosinegate", "cosinegate.errors"}, outside


def test_data_sources_match_the_data_package():
    from cosinegate.data import SOURCES

    assert args.DATA_SOURCES == tuple(SOURCES)


def test_trains_help_says_the_balanced_presets_own_defaults(monkeypatch):
    """`--epochs ... default: the config's, 30 for balanced`: each such value is what the balanced preset holds."""
    import re

    from cosinegate.config import load_config
    from cosinegate.training.run_config import OVERRIDES

    balanced, checked = load_config("balanced"), []
    for action in parser_of("train", monkeypatch)._actions:
        said = re.search(r"([\w.]+) for balanced", action.help or "")
        if said:
            section, field = OVERRIDES.get(action.dest, ("optim", action.dest))
            assert said.group(1) == str(balanced[section][field]), (action.dest, said.group(1))
            checked.append(action.dest)
    assert {"backbone", "mode", "epochs", "batch_size", "lr", "schedule", "target"} <= set(checked)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_command_line_is_one_error_line(command, capsys):
    """New-user audit: argparse printed its whole usage block (6-19 lines) before the error; --checkpiont was named,
    --check was silently taken for --checkpoint (prefix matching)."""
    parser = parser_of(command, pytest.MonkeyPatch())
    required = any(a.required for a in parser._actions)
    for argv, said in ((["--no-such-flag"], "unrecognized arguments: --no-such-flag"), ([], None)):
        if not (argv or required):  # nothing required: [] is a valid command line
            continue
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert (said or "the following arguments are required") in err and f"see {parser.prog} --help" in err, err
    flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--") and len(o) > 4]
    with pytest.raises(SystemExit):
        parser.parse_args([flags[0][:-1], "1"])  # an abbreviation is a flag it does not know
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(c for c in COMMANDS if c in ("export", "evaluate", "build-engine", "parity")))
def test_help_shows_the_required_flags_as_required(command, capsys):
    parser = parser_of(command, pytest.MonkeyPatch())
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())
    required = [a.option_strings[0] for a in parser._actions if a.required]
    assert required and all(f"[{flag}" not in usage and f" {flag} " in usage for flag in required), usage


@pytest.mark.parametrize("value, ok", [("cpu", True), ("cuda", True), ("cuda:1", True), ("gpu", False), ("cuda:", False),
                                       ("cuda:x", False), ("CPU", False)])
def test_device_names_are_checked_in_one_line(value, ok, capsys):
    """New-user audit: --device gpu reached torch, whose RuntimeError was a 22-line traceback."""
    if ok:
        assert parse("evaluate", ["--checkpoint", "c.pt", "--device", value]).device == value
        return
    with pytest.raises(SystemExit):
        parse("evaluate", ["--checkpoint", "c.pt", "--device", value])
    err = capsys.readouterr().err
    assert err.startswith("error: argument --device:") and "use cpu, cuda or cuda:N" in err and len(err.splitlines()) == 1


def test_the_opset_help_names_the_default_export_uses(parsers):
    """--help cannot import cosinegate.onnx (onnx is not in the base install), so it writes the default out."""
    from cosinegate.onnx import DEFAULT_OPSET

    for command in ("export", "build-engine"):
        assert f"(default {DEFAULT_OPSET}," in parsers[command]["--opset"][0].help, command


def test_the_target_help_lists_every_shipped_target(parsers):
    from cosinegate.trt.targets import list_targets

    text = parsers["build-engine"]["--target"][0].help
    assert list_targets() and all(name in text for name in list_targets(runtime=None)), text


def test_graph_forms_and_block_policies_are_argparse_choices_where_the_library_takes_them(parsers):
    """A bad --form or --policy is refused by argparse (before any file check or import), with the library's names."""
    from cosinegate.onnx import FORMS, POLICIES
    from cosinegate.pipeline.plan import FORMS as ENGINE_FORMS
    from cosinegate.quant.names import FORMS as QDQ_FORMS

    assert tuple(parsers["export"]["--form"][0].choices) == FORMS == QDQ_FORMS
    assert tuple(parsers["build-engine"]["--form"][0].choices) == ENGINE_FORMS == tuple(f for f in FORMS if f != "flat")
    for command in ("export", "calibrate", "bench"):
        assert tuple(parsers[command]["--policy"][0].choices) == POLICIES, command


def test_calibration_methods_are_argparse_choices(parsers):
    """calibrate --method entopy was refused after torch and onnx loaded (new-user audit); now argparse refuses it."""
    from cosinegate.quant.ranges import METHODS

    assert tuple(parsers["calibrate"]["--method"][0].choices) == METHODS


def test_no_help_names_a_checkout_script(monkeypatch):
    """An installed user has `cosinegate SUBCOMMAND`, not deploy/*.py (new-user audit: every --help's examples and
    several flags named the checkout's scripts)."""
    import re

    commands = "train|evaluate|export_onnx|build_engine|bench|parity|calibrate|evaluate_int8|force_gates|gpu_gate_sync"
    script = re.compile(rf"\b(deploy|train|calibration)/\w+\.py\b|\b({commands}|reproduce|bench_train|campaign|cpu_campaign)\.py\b")
    found = {command: script.findall(parser_of(command, monkeypatch).format_help()) for command in COMMANDS}
    assert not {command: names for command, names in found.items() if names}


@pytest.mark.parametrize("command", ["train", "evaluate", "bench-train", "gpu-gate-sync"])
def test_a_misspelled_backbone_is_refused_by_the_parser(command, capsys):
    """--backbone takes the backbones' names only (models/backbones.py, torch-free): a typo is argparse's one line at
    once, not an error after torch and the data loaded (or a checkpoint "not holding" a backbone that does not exist)."""
    from cosinegate.models.backbones import BACKBONES

    required = ["--checkpoint", "c.pt"] if command == "evaluate" else []
    assert all(parse(command, [*required, "--backbone", name]).backbone == name for name in BACKBONES)
    with pytest.raises(SystemExit) as stop:
        parse(command, [*required, "--backbone", "resnet21"])
    assert stop.value.code == 2 and "--backbone: invalid choice: 'resnet21'" in capsys.readouterr().err
