"""The README's commands are tests (as Polygraphy runs its examples).

- The two fresh-machine commands are there, and CI runs the test command the README names.
- The quick start runs, as written, on a tiny image folder on the CPU (only the counts made tiny), and the
  bundle its board block copies and unpacks is the one it made.
- Every command the README writes (`cosinegate SUB ...`, `python deploy/X.py ...`, `polygraphy run ...`)
  exists and takes every flag written after it; tests/test_docs.py does the same for docs/.

The parsing helpers here are shared with tests/test_docs.py.
"""

import functools
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# ---- reading commands out of markdown --------------------------------------------------------------

# a command whose flags are checked against its --help: ("cosinegate", SUB) | ("script", PATH) | ("polygraphy", SUB);
# a command whose flags are not checked (trtexec, pip, ...): ("other", NAME)
COMMAND = re.compile(
    r"(?<![\w./-])(?:python3?\s+-m\s+)?cosinegate\s+(?P<sub>[A-Za-z][\w-]*)"
    r"|(?<![\w./-])python3?\s+(?P<script>(?:train|deploy|calibration)/\w+\.py)"
    r"|(?<![\w./-])polygraphy\s+(?P<poly>[a-z]+)"
    r"|(?<![\w./-])(?P<other>trtexec|torchrun|pip3?|scp|tar|sh|sudo|git|nvpmodel|jetson_clocks)(?![\w./-])"
)
FLAG = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*)")
SEPARATOR = re.compile(r";|&&|\|\||\s\|\s")


@functools.cache
def subcommands():
    """The subcommands `cosinegate --help` lists."""
    done = subprocess.run([sys.executable, "-m", "cosinegate", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = re.search(r"\{([\w,-]+)\}", done.stdout)
    assert names, done.stdout
    return tuple(names.group(1).split(","))


@functools.cache
def help_text(kind, name):
    """--help of a command, or None where it cannot be asked here (polygraphy not installed)."""
    if kind == "cosinegate":
        argv = [sys.executable, "-m", "cosinegate", name, "--help"]
    elif kind == "script":
        argv = [sys.executable, str(ROOT / name), "--help"]
    else:
        polygraphy = shutil.which("polygraphy") or str(Path(sys.executable).with_name("polygraphy"))
        if not Path(polygraphy).is_file():
            return None
        argv = [polygraphy, name, "--help"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv[1:])}: {done.stderr[-2000:]}"
    return done.stdout


def code_segments(path):
    """(line number, code text, section command) for the code of a markdown file.

    Code is a fenced or 4-space indented block line (continuations joined, `# comments` dropped) or an inline
    `span`. The section command is ("cosinegate", SUB) under a heading "## `cosinegate SUB`" (docs/commands.md),
    else None: flags in a code span that names no command belong to it.
    """
    segments, fence, section, pending = [], False, None, ""
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence or line.startswith("    "):
            text = pending + line.strip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            segments.append((number, re.split(r"(?:^|\s)#\s", text)[0], section))
            continue
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            named = re.fullmatch(r"`cosinegate ([\w-]+)`", heading.group(1).strip())
            section = ("cosinegate", named.group(1)) if named else None
            continue
        segments += [(number, span, section) for span in re.findall(r"`([^`]+)`", line)]
    return segments


def command_flags(path):
    """[(line, (kind, name), [flags])]: the flags written after each command (up to the next command or ;/&&/|)."""
    found = []
    for number, text, section in code_segments(path):
        for part in SEPARATOR.split(text):
            owner, start = section, 0
            for match in COMMAND.finditer(part):
                found.append((number, owner, FLAG.findall(part[start:match.start()])))
                if match.group("sub"):
                    owner = ("cosinegate", match.group("sub"))
                elif match.group("script"):
                    owner = ("script", match.group("script"))
                elif match.group("poly"):
                    owner = ("polygraphy", match.group("poly"))
                else:
                    owner = ("other", match.group("other"))
                start = match.end()
            found.append((number, owner, FLAG.findall(part[start:])))
            section = None  # after a separator: another shell command
    return [(n, owner, flags) for n, owner, flags in found if owner is not None]


def wrong_commands(path):
    """Every command the file writes that does not exist here, or a flag after it that its --help does not list."""
    path = Path(path)
    problems, name = [], path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for number, (kind, command), flags in command_flags(path):
        if kind == "other":
            continue
        if kind == "cosinegate":
            if not re.fullmatch(r"[a-z][a-z0-9-]*", command):
                continue  # a placeholder: `cosinegate SUBCOMMAND --help`
            if command not in subcommands():
                problems.append(f"{name}:{number}: `cosinegate {command}` is not a subcommand ({', '.join(subcommands())})")
                continue
        if kind == "script" and not (ROOT / command).is_file():
            problems.append(f"{name}:{number}: {command} does not exist")
            continue
        text = help_text(kind, command) if flags else ""
        if text is None:
            continue
        for flag in flags:
            if flag != "--help" and not re.search(rf"{re.escape(flag)}(?![\w-])", text):
                problems.append(f"{name}:{number}: {kind} {command} does not take {flag} (not in its --help)")
    return problems


# ---- the README ------------------------------------------------------------------------------------

TEXT = README.read_text()


def test_readme_names_the_two_fresh_machine_commands():
    code = [text for _, text, _ in code_segments(README)]
    assert "bash scripts/pipeline.sh" in code and "bash scripts/test.sh" in code, "the two commands, each on its own line"
    assert (ROOT / "scripts/pipeline.sh").is_file() and (ROOT / "scripts/test.sh").is_file()
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_readme_stays_a_short_page_for_users():
    lines = TEXT.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: reference material goes into docs/"
    assert not re.search(r"\bissue[- ]?#?\d+", TEXT, re.IGNORECASE), "no project history in the README"


def test_readme_commands_exist_and_take_their_flags():
    found = command_flags(README)
    assert {command for _, (kind, command), _ in found if kind == "cosinegate"} >= {
        "train", "evaluate", "export", "parity", "calibrate", "build-engine", "bench"}
    assert not wrong_commands(README), "\n".join(wrong_commands(README))


def fenced_blocks_under(heading):
    """The fenced blocks of the README section whose heading starts with `heading`."""
    section = re.search(rf"^## {re.escape(heading)}.*?(?=^## )", TEXT, re.MULTILINE | re.DOTALL)
    assert section, f"README.md has no section '## {heading}'"
    return re.findall(r"^```\w*\n(.*?)^```", section.group(0), re.MULTILINE | re.DOTALL)


# the quick start's counts, made tiny; everything else runs as written
TINY = {"--epochs": "1", "--test-images": "8", "--calib-images": "16", "--iterations": "20", "--select-images": "12"}


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path):
    """The desktop block of the quick start, on a 3-class image folder (CPU, 1 epoch); then the board block's
    files: the tarball it copies is the one build-engine wrote, and it unpacks to the script it runs."""
    from conftest import script_env, write_image_tree

    desktop, board = fenced_blocks_under("Quick start")
    write_image_tree(tmp_path / "images", train_per_class=8, test_per_class=4)
    script = desktop.replace("--data-root ROOT", f"--data-root {tmp_path / 'images'}")
    assert script != desktop, "the quick start names its image folder as --data-root ROOT"
    for flag, value in TINY.items():
        script = re.sub(rf"{flag}\s+\d+", f"{flag} {value}", script)
    steps = re.findall(r"^cosinegate ([\w-]+)", script, re.MULTILINE)
    assert steps == ["train", "evaluate", "export", "parity", "calibrate", "build-engine", "bench"], steps
    prelude = f'set -euo pipefail\ncosinegate() {{ echo "+ cosinegate $*"; "{sys.executable}" -m cosinegate "$@"; }}\n'
    done = subprocess.run(["bash", "-c", prelude + script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env=script_env())
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    copied = re.search(r"^scp (\S+)", board, re.MULTILINE)
    unpacked = re.search(r"^tar xzf (\S+)", board, re.MULTILINE)
    run = re.search(r"^sh (\S+)", board, re.MULTILINE)
    assert copied and unpacked and run, board
    tarball = tmp_path / copied.group(1)
    assert tarball.is_file(), f"the quick start copies {copied.group(1)}, which build-engine did not write: {done.stdout[-2000:]}"
    assert Path(copied.group(1)).name == unpacked.group(1)
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert run.group(1) in names, f"{run.group(1)} is not in {unpacked.group(1)}: {names}"
