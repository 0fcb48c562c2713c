"""The commands' shared argument vocabulary: one titled argparse group per kind of flag that several commands take.

A command builds its parser from these groups (as Polygraphy's subtools share argument groups), so a flag that
means the same thing is spelled, typed, helped and defaulted the same way everywhere:

    model    --checkpoint CKPT                     add_checkpoint_flags
    data     --data, --data-root, --subset, --image-size   add_data_flags
    output   --out                                 add_output_flag
    report   --json REPORT (--quiet, --verbose)    add_report_flags
    device   --device, --threads                   add_device_flags

An old spelling stays as an alias (DeprecatedAlias): it still works and prints a one-line note naming the new flag.

Standard library and cosinegate.errors only: every command's --help works on the base install (numpy).
"""

import argparse
import copy
import math
import sys
import textwrap

# the data sources cosinegate.data loads (its SOURCES; tests/cli/test_args.py keeps the two equal): spelled out here
# so --help imports no data code
DATA_SOURCES = ("synthetic", "cifar10", "imagefolder")

JSON_HELP = "also write the command's JSON report to this file ('-': print it to stdout)"
DEVICE_HELP = "torch device: cpu | cuda | cuda:N"


def _unshown(default):
    """No default to show: none, a switch's False (by identity: a default of 0 is shown) or suppressed."""
    return default is None or default is False or default is argparse.SUPPRESS


class ArgumentParser(argparse.ArgumentParser):
    """The commands' parser: a flag it does not know is named first, with the closest one it does (argparse would
    report a misspelled --checkpoint as a missing one, not mention the misspelling); a flag is spelled out in full
    (argparse's abbreviations would take --check for --checkpoint); a bad command line is one ``error:`` line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        """One line on stderr naming the problem (argparse prints its whole usage first), exit 2."""
        self.exit(2, f"error: {message}; see {self.prog} --help\n")

    def parse_args(self, args=None, namespace=None):
        import difflib

        args = sys.argv[1:] if args is None else [str(a) for a in args]
        if {"-h", "--help"} & set(args):  # the usage line shows the required flags as required
            return super().parse_args(args, namespace)
        required = [a for a in self._actions if a.required]
        for action in required:
            action.required = False
        self.trial = True  # a first pass for unknown flags only: no missing flag refused, no note printed
        try:
            _, unknown = self.parse_known_args(args, copy.copy(namespace))
        finally:
            self.trial = False
            for action in required:
                action.required = True
        if unknown:
            flags = [o for a in self._actions for o in a.option_strings if a.help is not argparse.SUPPRESS]
            word = unknown[0].split("=", 1)[0]
            close = difflib.get_close_matches(word, flags, n=1) if word.startswith("-") else []
            self.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" (did you mean {close[0]}?)" if close else ""))
        return super().parse_args(args, namespace)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The commands' --help: the docstring as written, and every flag's default beside its help."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or _unshown(default) or not action.option_strings:
            return action.help
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".strip()

    def _format_action(self, action):
        # argparse prints no help line for a flag without help: give one with a default its "(default: ...)" too
        if not action.help and action.option_strings and not _unshown(action.default):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


class DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: stores into the new flag's destination and prints one line on stderr naming the
    new flag. Added by add_alias, hidden from --help (the new flag's help names the old spelling)."""

    def __init__(self, option_strings, dest, new, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if not getattr(parser, "trial", False):  # said once, on the parse that counts (ArgumentParser.parse_args)
            print(f"note: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_alias(container, old, action):
    """`old` as a deprecated spelling of the flag `action` (what add_argument returned) in `container`."""
    return container.add_argument(old, action=DeprecatedAlias, new=action.option_strings[0], dest=action.dest,
                                  type=action.type, choices=action.choices, metavar=action.metavar,
                                  default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_flag(container, flag, *old, **kwargs):
    """add_argument(flag, **kwargs), with each of `old` as a DeprecatedAlias of it; returns the flag's action."""
    action = container.add_argument(flag, **kwargs)
    for spelling in old:
        add_alias(container, spelling, action)
    return action


def _group(parser, title, description=None):
    # the formatter prints descriptions as written (the commands' docstrings are laid out by hand): wrap this one here
    return parser.add_argument_group(title, description and textwrap.fill(description, 76))


def add_version_flag(parser):
    """--version: the toolkit's version, the same on every command."""
    from cosinegate import __version__

    parser.add_argument("--version", action="version", version=f"cosinegate {__version__}")


def add_checkpoint_flags(parser, required=False, note=None, exclusive=False):
    """The 'model' group with --checkpoint CKPT; `note` (the group's description) says what the checkpoint is for in
    this command or what is used without one. Returns the group, or with `exclusive` a mutually exclusive group in
    it, for the command's other model flags (--onnx, --engine, --bundle)."""
    group = _group(parser, "model", note)
    target = group.add_mutually_exclusive_group() if exclusive else group
    target.add_argument("--checkpoint", required=required, metavar="CKPT",
                        help="checkpoint written by cosinegate train (best.pt or last.pt)")
    return target


def add_data_flags(parser, default="the checkpoint's", source=None, image_size=True, subset=True):
    """The 'data' group: --data, --data-root, --subset (where the command takes a subset), --image-size; `default`
    says where the data comes from when --data/--data-root are not given (`source`: --data's value then)."""
    group = _group(parser, "data")
    group.add_argument("--data", default=source, choices=DATA_SOURCES, help=f"data source (default: {default})")
    group.add_argument("--data-root", default=None, metavar="DIR",
                       help=f"folder of cifar10 batches or ROOT/{{train,test}}/<class>/ images (default: {default})")
    if subset:
        group.add_argument("--subset", type=positive_int, default=None, metavar="N",
                           help="deterministic class-balanced subset of N images")
    if image_size:
        group.add_argument("--image-size", type=positive_int, default=None, metavar="N",
                           help="input size N x N (train: default 32, 224 for resnet18/34/50; later stages: the "
                                "checkpoint's, a different N is refused)")
    return group


def add_output_flag(parser, help, default=None, required=False, metavar="DIR"):
    """The 'output' group with --out (`help`: what is written there); returns the group."""
    group = _group(parser, "output")
    group.add_argument("--out", default=default, required=required, metavar=metavar, help=help)
    return group


QUIET_HELP = "print only the result and errors: no notes, no progress bars"
VERBOSE_HELP = "also print details (e.g. which stages were reused) and Polygraphy's warnings and info lines"


def add_report_flags(parser, holds, quiet=False, old=(), verbosity=False):
    """The 'report' group: --json REPORT (the same help on every command; `holds`, the group's description, says
    what the report holds); `old`: deprecated spellings of --json. With `verbosity` --quiet and
    --verbose (cosinegate.progress.Log.of(args.quiet, args.verbose) is the command's log); with `quiet` (train)
    --no-progress and --quiet instead."""
    note = f"The JSON report (--json) holds {holds}"
    if old:
        note += f" ({', '.join(old)} is the old spelling)"
    note += "."
    group = _group(parser, "report", note)
    add_flag(group, "--json", *old, metavar="REPORT", help=JSON_HELP)
    if quiet:
        group.add_argument("--no-progress", action="store_true", help="no progress bar (the per-epoch lines stay)")
        group.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines (errors and "
                                                                "the result only)")
    elif verbosity:
        levels = group.add_mutually_exclusive_group()
        levels.add_argument("--quiet", action="store_true", help=QUIET_HELP)
        levels.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return group


def add_device_flags(parser, device="cpu", threads=None, note=None):
    """The 'device' group: --device (default `device`; None: no --device) and, unless `threads` is None, --threads N
    (default `threads`; "torch's choice" when that is 0); `note` is the group's description."""
    group = _group(parser, "device", note)
    if device is not None:
        group.add_argument("--device", type=device_name, default=device, help=DEVICE_HELP)
    if threads is not None:
        text = "intra-op threads of each process (torch, ONNX Runtime)"
        group.add_argument("--threads", type=positive_int, metavar="N", default=threads or None,
                           help=text if threads else f"{text} (default: torch's choice)")
    return group


def _number(kind, text, low, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    if not math.isfinite(value) or value < low or (what == "positive" and value <= 0):
        raise argparse.ArgumentTypeError(f"must be {'at least ' + str(low) if what != 'positive' else 'above 0'}, got {text}")
    return value


def device_name(text):
    """argparse type: a torch device the commands run on: cpu, cuda or cuda:N (torch's own error is a traceback)."""
    kind, colon, index = text.partition(":")
    if text == "cpu" or (kind == "cuda" and (not colon or (index.isdigit() and index.isascii()))):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device here: use cpu, cuda or cuda:N")


def positive_int(text):
    """argparse type: a whole number >= 1."""
    return _number(int, text, 1, "at least")


def nonnegative_int(text):
    """argparse type: a whole number >= 0."""
    return _number(int, text, 0, "at least")


def seed_int(text):
    """argparse type: a seed numpy and torch both take, 0..2^32-1."""
    value = _number(int, text, 0, "at least")
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be at most {2**32 - 1} (a 32-bit seed), got {text}")
    return value


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _number(float, text, 0.0, "positive")
