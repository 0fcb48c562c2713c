"""docs/ cannot drift from the code: every command a page writes exists and takes the flags written after it,
docs/commands.md has a section for every subcommand, and links and repository paths resolve."""

import re

import pytest

import test_readme as readme  # the markdown command parser (not its tests)

ROOT = readme.ROOT
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]


def test_docs_exist():
    names = {page.name for page in DOCS}
    assert {"commands.md", "graph-forms.md", "int8.md", "jetson.md", "compute-accounting.md", "security.md",
            "training.md", "results.md"} <= names, names


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_commands_exist_and_take_their_flags(page):
    problems = readme.wrong_commands(page)
    assert not problems, "\n".join(problems)


def test_commands_page_covers_every_subcommand():
    text = (ROOT / "docs/commands.md").read_text()
    sections = set(re.findall(r"^## `cosinegate ([\w-]+)`", text, re.MULTILINE))
    assert sections == set(readme.subcommands()), (sorted(set(readme.subcommands()) - sections), sorted(sections - set(readme.subcommands())))


def test_the_checker_catches_a_wrong_flag(tmp_path):
    """A flag a command does not take is reported, in a code block, an inline span and a command's section."""
    page = tmp_path / "page.md"
    page.write_text("    cosinegate export --checkpoint C --out m.onnx --no-such-flag\n\n"
                    "Text `cosinegate parity --onnx m.onnx --tolerance 3` and `cosinegate bulid-engine`.\n\n"
                    "## `cosinegate bench`\n\n- `--compare-dense`, `--rounds N`, `--no-such-bench-flag`\n")
    problems = readme.wrong_commands(page)
    assert len(problems) == 4, problems
    assert any("export does not take --no-such-flag" in p for p in problems)
    assert any("parity does not take --tolerance" in p for p in problems)
    assert any("`cosinegate bulid-engine` is not a subcommand" in p for p in problems)
    assert any("bench does not take --no-such-bench-flag" in p for p in problems)


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no {file}")
        elif anchor and anchor not in {slug(h) for h in re.findall(r"^#+\s+(.*)", file.read_text(), re.MULTILINE)}:
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert not broken, broken


REPO_PATH = re.compile(r"(?<![\w./-])((?:train|deploy|calibration|cosinegate|tests|engines|scripts|docs)/[\w./*-]*)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_repository_paths_exist(page):
    """Every repository path a page names in code (train/results/..., engines/targets/*.toml, tests/...) is there."""
    missing = []
    for number, text, _ in readme.code_segments(page):
        for match in REPO_PATH.finditer(text):
            path, token = match.group(1).rstrip("."), text[match.start():].split()[0]
            if re.search(r"[<$\[]", token) or (re.search(r"[A-Z]{2,}", path) and not path.endswith(".md")):
                continue  # a placeholder: train/results/NAME, engines/<target>/
            if re.search(r"(?:--out|--results|--carry|--state)[\s=]+$", text[:match.start()]):
                continue  # an output a command writes
            if not any(ROOT.glob(path.rstrip("/"))):
                missing.append(f"{page.name}:{number}: {path}")
    assert not missing, missing
