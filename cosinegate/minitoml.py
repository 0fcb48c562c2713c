"""A strict reader for the TOML subset the target profiles use, for Pythons without ``tomllib`` (< 3.11).

JetPack 5.1 ships Python 3.8 and JetPack 6 Python 3.10, and TensorRT's Python bindings exist only for
that system Python, so the device side cannot rely on ``tomllib`` or a third-party TOML package.

Supported: ``#`` comments, ``key = value`` with bare keys, ``[table]`` and ``[[array-of-tables]]``
headers (one name each), basic ("...") and literal ('...') one-line strings, integers, floats,
booleans, and arrays of those (multi-line, trailing comma and comments allowed). Anything else
(inline tables, dotted keys, dates, multi-line strings, duplicate keys) is refused with the line
number, never guessed. ``tests/core/test_minitoml.py`` checks that it reads every shipped profile exactly
as ``tomllib`` does.
"""

import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INT = re.compile(r"[+-]?(?:0|[1-9](?:_?[0-9])*)")
_FLOAT = re.compile(r"[+-]?(?:0|[1-9](?:_?[0-9])*)(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class TOMLError(ValueError):
    """Text outside the supported subset, with its line number."""

    def __init__(self, line, problem):
        super().__init__(f"line {line}: {problem}")
        self.line = line


def loads(text):
    """Parse ``text`` into dicts/lists/scalars like ``tomllib.loads`` does for this subset."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text):
        self.text = text
        self.pos = 0
        self.line = 1
        self.arrays_of_tables = set()

    def parse(self):
        root = {}
        table = root
        while True:
            self._skip_blank_lines()
            if self.pos >= len(self.text):
                return root
            if self._peek() == "[":
                table = self._header(root)
            else:
                key = self._key()
                self._skip_spaces()
                self._expect("=")
                self._skip_spaces()
                value = self._value()
                if key in table:
                    raise TOMLError(self.line, f"key {key!r} is defined twice")
                table[key] = value
            self._end_of_line()

    def _header(self, root):
        array = self.text.startswith("[[", self.pos)
        self.pos += 2 if array else 1
        self._skip_spaces()
        name = self._key()
        self._skip_spaces()
        self._expect("]]" if array else "]")
        if array:
            if name in root and name not in self.arrays_of_tables:
                raise TOMLError(self.line, f"[[{name}]] clashes with an earlier {name!r}")
            self.arrays_of_tables.add(name)
            root.setdefault(name, []).append({})
            return root[name][-1]
        if name in root:
            raise TOMLError(self.line, f"table [{name}] is defined twice")
        root[name] = {}
        return root[name]

    def _key(self):
        if self._peek() in "\"'":
            return self._string()
        match = _BARE_KEY.match(self.text, self.pos)
        if not match:
            raise TOMLError(self.line, f"expected a key, found {self._rest_of_line()!r}")
        self.pos = match.end()
        if self._peek() == ".":
            raise TOMLError(self.line, "dotted keys are not supported; write one [table] per level")
        return match.group()

    def _value(self):
        char = self._peek()
        if char in "\"'":
            if self.text.startswith(char * 3, self.pos):
                raise TOMLError(self.line, "multi-line strings are not supported")
            return self._string()
        if char == "[":
            return self._array()
        if char == "{":
            raise TOMLError(self.line, "inline tables are not supported; use a [table]")
        for word, value in (("true", True), ("false", False)):
            if self.text.startswith(word, self.pos) and not _BARE_KEY.match(self.text, self.pos + len(word)):
                self.pos += len(word)
                return value
        number = _FLOAT.match(self.text, self.pos)
        if number and number.end() > self.pos:
            token = number.group()
            following = self.text[number.end():number.end() + 1]
            if following and (following.isalnum() or following in ":-_."):
                raise TOMLError(self.line, f"unsupported value {self._rest_of_line()!r} (dates and special floats are not)")
            self.pos = number.end()
            return int(token.replace("_", "")) if _INT.fullmatch(token) else float(token.replace("_", ""))
        raise TOMLError(self.line, f"unsupported value {self._rest_of_line()!r}")

    def _array(self):
        self.pos += 1
        items = []
        while True:
            self._skip_blank_lines()
            if self._peek() == "]":
                self.pos += 1
                return items
            items.append(self._value())
            self._skip_blank_lines()
            if self._peek() == ",":
                self.pos += 1
            elif self._peek() != "]":
                raise TOMLError(self.line, f"expected ',' or ']' in an array, found {self._rest_of_line()!r}")

    def _string(self):
        quote = self._peek()
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise TOMLError(self.line, "string is not closed on its line")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\" and quote == '"':
                out.append(self._escape())
            elif char != "\t" and (ord(char) < 0x20 or ord(char) == 0x7F):
                raise TOMLError(self.line, "control character in a string")
            else:
                out.append(char)

    def _escape(self):
        char = self.text[self.pos:self.pos + 1]
        self.pos += 1
        if char in _ESCAPES:
            return _ESCAPES[char]
        if char in ("u", "U"):
            width = 4 if char == "u" else 8
            digits = self.text[self.pos:self.pos + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise TOMLError(self.line, f"bad \\{char} escape")
            self.pos += width
            return chr(int(digits, 16))
        raise TOMLError(self.line, f"unknown escape \\{char}")

    def _peek(self):
        return self.text[self.pos:self.pos + 1]

    def _expect(self, token):
        if not self.text.startswith(token, self.pos):
            raise TOMLError(self.line, f"expected {token!r}, found {self._rest_of_line()!r}")
        self.pos += len(token)

    def _skip_spaces(self):
        while self._peek() in (" ", "\t") and self._peek():
            self.pos += 1

    def _skip_comment(self):
        if self._peek() == "#":
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end

    def _skip_blank_lines(self):
        """Spaces, comments and newlines (between statements and inside arrays)."""
        while True:
            self._skip_spaces()
            self._skip_comment()
            if self.text.startswith("\r\n", self.pos):
                self.pos += 2
            elif self._peek() == "\n":
                self.pos += 1
            else:
                return
            self.line += 1

    def _end_of_line(self):
        self._skip_spaces()
        self._skip_comment()
        if self.pos < len(self.text) and not (self._peek() == "\n" or self.text.startswith("\r\n", self.pos)):
            raise TOMLError(self.line, f"unexpected text {self._rest_of_line()!r} after a value")

    def _rest_of_line(self):
        end = self.text.find("\n", self.pos)
        return self.text[self.pos:end if end >= 0 else len(self.text)][:40]
