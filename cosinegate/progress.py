"""How much a command says while it works: its result always, notes and progress bars by default, details with --verbose.

A command makes one `Log` from its --quiet/--verbose flags (cosinegate/cli/args.py, add_report_flags with
verbosity=True) and hands it to the library as the `log` callable it already takes: ``log(text)`` is a normal line
(hidden by --quiet), ``log.detail(text)`` a --verbose line (e.g. a reused stage), ``log.warn(text)`` a warning on
stderr (shown even with --quiet, and where stdout is a log file), ``log.bar(...)`` a tqdm progress bar on stderr
(shown only where stderr is a terminal, never with --quiet). Library code that got a plain callable (``print``, a
test's list.append) calls the module functions `detail`, `warn` and `bar`, which fall back to: no detail lines,
warnings on stderr for ``print`` (the library's default) and to any other callable itself, and a bar only on a
terminal.

Polygraphy's logger follows the same level (`Log.apply_to_polygraphy`): --quiet shows its errors only; the default
its errors too (its [W]/[I] lines are TensorRT's and Polygraphy's working notes; what matters to the user the
toolkit says in its own words); --verbose its warnings and info lines.

Standard library only at import: every command's --help works on the base install.
"""

import sys

QUIET, NORMAL, VERBOSE = 0, 1, 2
LEVELS = {QUIET: "quiet", NORMAL: "normal", VERBOSE: "verbose"}


class Log:
    """The `log` callable of one command run at one verbosity `level` (QUIET, NORMAL or VERBOSE)."""

    def __init__(self, level=NORMAL, out=None, err=None):
        if level not in LEVELS:
            raise ValueError(f"verbosity level {level!r}: use one of {sorted(LEVELS)}")
        self.level = level
        self._out, self._err = out, err

    @classmethod
    def of(cls, quiet=False, verbose=False, **streams):
        """The Log of a command's --quiet / --verbose flags."""
        return cls(QUIET if quiet else VERBOSE if verbose else NORMAL, **streams)

    @property
    def quiet(self):
        return self.level == QUIET

    @property
    def verbose(self):
        return self.level >= VERBOSE

    @property
    def out(self):
        return self._out or sys.stdout  # looked up at each call: a test's capture replaces sys.stdout

    @property
    def err(self):
        return self._err or sys.stderr

    def __call__(self, text):
        """A normal line: a note, a stage done (hidden by --quiet)."""
        if self.level >= NORMAL:
            print(text, file=self.out, flush=True)

    def detail(self, text):
        """A --verbose line."""
        if self.level >= VERBOSE:
            print(text, file=self.out, flush=True)

    def warn(self, text):
        """A warning: stderr, at every level (a failed check is seen even with --quiet or where stdout is a log)."""
        print(text, file=self.err, flush=True)

    def bar(self, iterable=None, total=None, desc=None, unit="it"):
        """A progress bar on stderr: tqdm where it is installed and stderr is a terminal, never with --quiet."""
        return make_bar(iterable, total, desc, unit, show=None if self.level >= NORMAL else False, stream=self.err)

    def apply_to_polygraphy(self):
        """Set Polygraphy's logger (if Polygraphy is installed) to this level; returns the severity set, or None."""
        try:
            from polygraphy.logger import G_LOGGER
        except ImportError:
            return None
        severity = {QUIET: G_LOGGER.ERROR, NORMAL: G_LOGGER.ERROR, VERBOSE: G_LOGGER.INFO}[self.level]
        if isinstance(getattr(type(G_LOGGER), "module_severity", None), property):  # Polygraphy 0.48+
            G_LOGGER.module_severity = severity
        else:
            G_LOGGER.severity = severity
        return severity


def detail(log, text):
    """``log.detail(text)`` where `log` is a Log; nothing for a plain callable (it has no --verbose)."""
    method = getattr(log, "detail", None)
    if method is not None:
        method(text)


def warn(log, text):
    """``log.warn(text)`` where `log` is a Log; the library's default ``print`` prints it on stderr; another callable
    (a test's list.append) gets it as one of its lines; None: nothing (the caller wants silence)."""
    method = getattr(log, "warn", None)
    if method is not None:
        method(text)
    elif log is print:
        print(text, file=sys.stderr, flush=True)
    elif log is not None:
        log(text)


def bar(log, iterable=None, total=None, desc=None, unit="it"):
    """A progress bar for a step of `log`'s command: ``log.bar`` where `log` is a Log; for a plain callable a bar
    only on a terminal, and none when `log` is None (the caller wants silence)."""
    method = getattr(log, "bar", None)
    if method is not None:
        return method(iterable, total, desc, unit)
    return make_bar(iterable, total, desc, unit, show=None if log else False)


def make_bar(iterable=None, total=None, desc=None, unit="it", show=None, stream=None):
    """tqdm(iterable, ...) on `stream` (stderr) that vanishes when done; show None: only on a terminal, False: never.
    Without tqdm (the base and deploy installs, e.g. on the board) a line per step on a terminal, else nothing."""
    stream = stream or sys.stderr
    if show is not False:
        try:
            from tqdm import tqdm
        except ImportError:
            if show or _is_terminal(stream):
                return LineBar(iterable, total, desc, stream)
        else:
            return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=stream,
                        disable=None if show is None else False)
    return SilentBar(iterable, total)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class SilentBar:
    """A progress bar that shows nothing (quiet, or not a terminal without tqdm)."""

    def __init__(self, iterable=None, total=None):
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.n += 1

    def update(self, n=1):
        self.n += n

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class LineBar(SilentBar):
    """Without tqdm: one line per step on `stream`, e.g. 'calibration pass 1/2: 3/16'."""

    def __init__(self, iterable=None, total=None, desc=None, stream=None):
        super().__init__(iterable, total)
        self.desc, self.stream = desc or "progress", stream

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update()

    def update(self, n=1):
        self.n += n
        print(f"{self.desc}: {self.n}{'/' + str(self.total) if self.total else ''}", file=self.stream, flush=True)
