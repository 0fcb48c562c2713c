"""The profile TOML reader (no tomllib on JetPack's Python 3.8/3.10): same result as tomllib on
every shipped profile and on the subset's corner cases; everything outside the subset refused."""

import tomllib

import pytest

from cosinegate import minitoml
from cosinegate.trt.targets import DEFAULT_TARGETS_DIR

PROFILES = sorted(DEFAULT_TARGETS_DIR.glob("*.toml"))


def test_there_are_profiles():
    assert len(PROFILES) >= 6


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_shipped_profile_reads_as_tomllib_reads_it(path):
    text = path.read_text(encoding="utf-8")
    assert minitoml.loads(text) == tomllib.loads(text)


SUBSET = """\
# comment
name = "a \\"quoted\\" \\u00e9 \\\\ name"   # trailing comment
path = 'C:\\raw'
"dash-key" = -12
big = 1_000
ratio = 0.5
exp = 1e3
on = true
off = false
empty = []
nested = [[1, 2], ["x"]]
multi = [
    "a",  # one
    "b",
]

[[tensorrt]]
version = "8.5.2"
jetpack = ["5.1"]

[[tensorrt]]
version = "10"

[extra]
key = 1
"""


def test_subset_matches_tomllib():
    assert minitoml.loads(SUBSET) == tomllib.loads(SUBSET)
    assert minitoml.loads(SUBSET.replace("\n", "\r\n")) == tomllib.loads(SUBSET.replace("\n", "\r\n"))


OUTSIDE_SUBSET = [("a = {x = 1}\n", "inline tables"), ("a.b = 1\n", "dotted keys"),
                  ('a = """x"""\n', "multi-line strings"), ("a = 1979-05-27\n", "unsupported value"),
                  ("a = inf\n", "unsupported value")]
NOT_TOML = [("a = 1\na = 2\n", "defined twice"), ('a = "open\n', "not closed"), ("a = 1 2\n", "unexpected text"),
            ("a = [1 2]\n", "expected ','"), ("= 1\n", "expected a key"), ("t = 1\n[[t]]\n", "clashes"),
            ("[t]\n[t]\n", "defined twice"), ('a = "\\q"\n', "unknown escape"), ("a = \n", "unsupported value")]


@pytest.mark.parametrize("text, problem", OUTSIDE_SUBSET + NOT_TOML)
def test_refused_with_the_problem(text, problem):
    with pytest.raises(minitoml.TOMLError, match=problem):
        minitoml.loads(text)


@pytest.mark.parametrize("text, problem", NOT_TOML)
def test_what_it_refuses_as_broken_tomllib_refuses_too(text, problem):
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)


def test_error_names_the_line():
    with pytest.raises(minitoml.TOMLError, match="line 3"):
        minitoml.loads("a = 1\n\nb = 1 2\n")
