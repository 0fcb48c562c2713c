"""One verbosity for every command (cosinegate.progress): --quiet prints the result and errors only, the default
adds notes and progress bars (on a terminal), --verbose adds details and Polygraphy's info lines."""

import io

import pytest

from cosinegate import progress
from cosinegate.cli import command_log
from cosinegate.progress import NORMAL, QUIET, VERBOSE, Log


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def polygraphy_severity():
    """Polygraphy's logger as it was before the test (a command sets it for the whole process)."""
    from polygraphy.logger import G_LOGGER

    before = G_LOGGER.module_severity
    yield G_LOGGER
    G_LOGGER.module_severity = before


@pytest.mark.parametrize("level, lines", [(QUIET, []), (NORMAL, ["note"]), (VERBOSE, ["note", "detail"])])
def test_each_level_prints_its_lines(level, lines):
    out = io.StringIO()
    log = Log(level, out=out)
    log("note")
    progress.detail(log, "detail")
    assert out.getvalue().splitlines() == lines


def test_of_reads_the_flags():
    assert [Log.of().level, Log.of(quiet=True).level, Log.of(verbose=True).level] == [NORMAL, QUIET, VERBOSE]
    with pytest.raises(ValueError):
        Log(7)


def test_a_plain_callable_gets_no_details():
    said = []
    progress.detail(said.append, "detail")
    assert said == []


@pytest.mark.parametrize("level", [QUIET, NORMAL, VERBOSE])
def test_warnings_go_to_stderr_at_every_level(level):
    out, err = io.StringIO(), io.StringIO()
    progress.warn(Log(level, out=out, err=err), "warning: x")
    assert (out.getvalue(), err.getvalue()) == ("", "warning: x\n")


def test_a_plain_callable_gets_warnings_as_lines_and_print_on_stderr(capsys):
    said = []
    progress.warn(said.append, "warning: x")
    progress.warn(None, "warning: y")  # silence asked for
    assert said == ["warning: x"] and capsys.readouterr() == ("", "")
    progress.warn(print, "warning: z")  # the library's default log: a Python caller of deploy() sees it on stderr
    assert capsys.readouterr() == ("", "warning: z\n")


@pytest.mark.parametrize("level, shown", [(QUIET, False), (NORMAL, True), (VERBOSE, True)])
def test_bars_on_a_terminal_unless_quiet(level, shown):
    err = Terminal()
    log = Log(level, err=err)
    assert list(progress.bar(log, range(5), desc="images")) == [0, 1, 2, 3, 4]
    with progress.bar(log, total=3, desc="turns") as turns:
        turns.update()
    assert ("images" in err.getvalue() and "turns" in err.getvalue()) is shown


def test_no_bar_where_stderr_is_not_a_terminal():
    err = io.StringIO()
    assert list(Log(NORMAL, err=err).bar(range(3), desc="images")) == [0, 1, 2]
    assert err.getvalue() == ""


def test_bar_without_a_log_is_silent(capsys):
    with progress.bar(None, total=2, desc="silent") as shown:
        shown.update(2)
    assert list(progress.bar(None, [1, 2])) == [1, 2]
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("flags, info_shown, warning_shown", [([], False, False), (["--quiet"], False, False),
                                                             (["--verbose"], True, True)])
def test_polygraphy_follows_the_command(flags, info_shown, warning_shown, polygraphy_severity, capsys):
    """A Polygraphy [I] (and [W]) line is hidden at the default level and with --quiet, shown with --verbose."""
    from cosinegate.cli.parity import parse_args

    command_log(parse_args(["--checkpoint", "c.pt", "--onnx", "m.onnx", *flags]))
    polygraphy_severity.info("an info line of polygraphy")
    polygraphy_severity.warning("a warning line of polygraphy")
    polygraphy_severity.error("an error line of polygraphy")
    out = capsys.readouterr().out
    assert ("an info line of polygraphy" in out) is info_shown
    assert ("a warning line of polygraphy" in out) is warning_shown
    assert "an error line of polygraphy" in out  # errors always


def test_quiet_and_verbose_exclude_each_other(capsys):
    from cosinegate.cli.parity import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "c.pt", "--onnx", "m.onnx", "--quiet", "--verbose"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_without_tqdm_a_line_per_step_on_a_terminal(monkeypatch):
    """The board's install has no tqdm: a terminal still sees the steps, a pipe nothing."""
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    err = Terminal()
    with Log(NORMAL, err=err).bar(total=2, desc="blocks") as blocks:
        blocks.update()
        blocks.update()
    assert err.getvalue().splitlines() == ["blocks: 1/2", "blocks: 2/2"]
    pipe = io.StringIO()
    assert list(Log(NORMAL, err=pipe).bar([1, 2], desc="blocks")) == [1, 2] and pipe.getvalue() == ""
