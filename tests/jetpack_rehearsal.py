"""The pieces of the JetPack rehearsal (tests/device/test_jetpack_rehearsal.py): a board's Python, pip and TensorRT, here.

Per JetPack: a venv of that JetPack's Python (pyenv) with its Ubuntu's pip and setuptools, into which the bundle
README's line ``pip3 install -e '.[device]'`` installs what a user gets there (numpy included; no torch); and a
``tensorrt`` package made of the release's REAL ``tensorrt/__init__.py`` (read from the release's wheel on PyPI)
over a stand-in for the compiled bindings that has exactly the release's API names (tests/data/trt_api/<release>.txt,
plus the names that ``__init__.py`` itself reads). Any use of a binding raises ``FirstRealCall``: the rehearsal runs
the board side up to the first real TensorRT or CUDA call, never further. It is no evidence that a build works.
"""

import ast
import builtins
import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data" / "trt_api"
CACHE = Path(os.environ.get("COSINEGATE_REHEARSAL_CACHE", Path.home() / ".cache" / "cosinegate-rehearsal"))
PYPI = "https://pypi.org/simple"
MARKER = "rehearsal: first real TensorRT/CUDA call"


@dataclass(frozen=True)
class JetPack:
    name: str
    python: str  # the system Python (pyenv version prefix)
    trt_version: str  # tensorrt.__version__ on the board
    wheel: tuple  # (PyPI project, version, python tag) whose tensorrt/__init__.py is the release's
    api: str  # tests/data/trt_api/<api>.txt
    pip: str  # Ubuntu's python3-pip
    setuptools: str  # Ubuntu's python3-setuptools
    opencv: str  # opencv-python-headless standing in for JetPack's OpenCV (its version, built against numpy 1.x)

    @property
    def trtexec_banner(self):
        """The number trtexec prints as [TensorRT vNNNN]."""
        major, minor, patch = (int(p) for p in self.trt_version.split(".")[:3])
        return str(major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch)


# JetPack release notes: 5.1 = TensorRT 8.5.2.2, OpenCV 4.5.4, Python 3.8, Ubuntu 20.04 (pip 20.0.2, setuptools
# 45.2.0); 6.0 = TensorRT 8.6.2.3, 6.1/6.2 = TensorRT 10.3.0.30, both OpenCV 4.8.0, Python 3.10, Ubuntu 22.04 (pip
# 22.0.2, setuptools 59.6.0). The 8.6 __init__.py comes from the 8.6.1 bindings wheel (no 8.6.2 on PyPI).
JETPACKS = {
    "5.1": JetPack("5.1", "3.8", "8.5.2.2", ("tensorrt", "8.5.2.2", "cp38"), "8.5.2", "20.0.2", "45.2.0", "4.5.4.60"),
    "6.0": JetPack("6.0", "3.10", "8.6.2.3", ("tensorrt-bindings", "8.6.1", "cp310"), "8.6.1", "22.0.2", "59.6.0", "4.8.0.76"),
    "6.1": JetPack("6.1", "3.10", "10.3.0.30", ("tensorrt-cu12-bindings", "10.3.0", "cp310"), "10.3.0", "22.0.2", "59.6.0",
                   "4.8.0.76"),
}


def why_not(jetpack):
    """Why the rehearsal of ``jetpack`` cannot run here (None when it can)."""
    if pyenv_python(jetpack.python) is None:
        return f"no Python {jetpack.python} from pyenv here (`pyenv install {jetpack.python}`)"
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError as exc:
        return f"PyPI (pypi.org:443) is not reachable ({exc}); the rehearsal installs what a board's pip3 resolves"
    return None


def pyenv_python(version):
    """Path of pyenv's python<version> (newest patch), or None."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"), key=lambda p: [int(x) for x in p.parts[-3].split(".")])
    return found[-1] if found else None


def clean_pip_env(env=None):
    """pip as on a board: PyPI only, no local indexes, wheel folders or constraints of this machine."""
    env = dict(os.environ if env is None else env)
    for key in [k for k in env if k.startswith("PIP_")]:
        del env[key]
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_DEFAULT_TIMEOUT="60")
    if os.environ.get("PIP_CERT"):
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def run(args, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 600)
    return subprocess.run([str(a) for a in args], **kwargs)


def cached_venv(version, name, key, first=()):
    """CACHE/<name>-<version>-<key>: a venv of pyenv's Python ``version``, kept between runs; made anew where absent,
    left half-made by a failed run, or made for another key. ``first``: pip argument lists run once, when it is made."""
    venv = CACHE / f"{name}-{version}-{key}"
    if not (venv / "made").is_file():
        for old in CACHE.glob(f"{name}-{version}-*"):
            shutil.rmtree(old, ignore_errors=True)
        made = run([pyenv_python(version), "-m", "venv", venv])
        assert made.returncode == 0, made.stderr
        for args in first:
            done = run([venv / "bin" / "python", "-m", "pip", *args], env=clean_pip_env())
            assert done.returncode == 0, done.stderr
        (venv / "made").write_text("")
    return venv


def board_venv(jetpack, root):
    """A venv of the JetPack's Python with its Ubuntu's pip and setuptools, ``pip3 install -e '.[device]'`` from
    ``root`` run in it (the bundle README's line), then JetPack's OpenCV added as apt adds it: beside, never resolved
    by pip (``--no-deps``), so a numpy the install moved to is the one it must import with. Returns (venv path, the
    CompletedProcess of the install, or of the OpenCV step where the install passed and it failed).

    Kept between runs, keyed by the project's requirements: a changed setup.cfg resolves afresh, as a board would."""
    key = hashlib.sha256(jetpack.opencv.encode() + b"".join(
        (root / f).read_bytes() for f in ("setup.cfg", "setup.py", "pyproject.toml") if (root / f).is_file())).hexdigest()[:12]
    venv = cached_venv(jetpack.python, f"venv-pip{jetpack.pip}", key,
                       first=[["install", "-q", f"pip=={jetpack.pip}", f"setuptools=={jetpack.setuptools}"]])
    install = run([venv / "bin" / "pip3", "install", "-q", "-e", ".[device]"], cwd=root, env=clean_pip_env())
    if install.returncode != 0:
        return venv, install
    opencv = run([venv / "bin" / "pip3", "install", "-q", "--no-deps", f"opencv-python-headless=={jetpack.opencv}"],
                 env=clean_pip_env())
    return venv, install if opencv.returncode == 0 else opencv


def python_venv(version, requirements, name):
    """A venv of pyenv's Python ``version`` with ``requirements`` installed from PyPI by pip as a user's would (kept
    between runs, keyed by the requirements). Returns (venv path, the install's CompletedProcess)."""
    venv = cached_venv(version, name, hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12])
    return venv, run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-U", *requirements], env=clean_pip_env())


class RangeFile(io.RawIOBase):
    """A remote file read by HTTP range requests: zipfile reads one member of a wheel without the whole wheel."""

    def __init__(self, url):
        self.url, self.pos = url, 0
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as response:
            self.size = int(response.headers["Content-Length"])

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=0):
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def readinto(self, buffer):
        end = min(self.pos + len(buffer), self.size) - 1
        if end < self.pos:
            return 0
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.pos}-{end}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            data = response.read()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def wheel_url(project, version, tag):
    """URL of the project's manylinux x86_64 wheel for ``tag`` from PyPI's simple index."""
    with urllib.request.urlopen(f"{PYPI}/{project}/", timeout=60) as response:
        page = response.read().decode()
    name = project.replace("-", "_")
    for href in re.findall(r'href="([^"]+)"', page):
        file = href.split("#")[0].rsplit("/", 1)[-1]
        if re.fullmatch(rf"{re.escape(name)}-{re.escape(version)}-{tag}-none-manylinux[0-9_]*_x86_64\.whl", file):
            return urllib.parse.urljoin(f"{PYPI}/{project}/", href.split("#")[0])
    raise LookupError(f"no {project} {version} {tag} x86_64 wheel on PyPI")


def release_init(jetpack):
    """The release's tensorrt/__init__.py as its wheel ships it (cached), with the board's __version__."""
    cached = CACHE / "trt-init" / f"{jetpack.wheel[0]}-{jetpack.wheel[1]}.py"
    if not cached.is_file():
        with zipfile.ZipFile(RangeFile(wheel_url(*jetpack.wheel))) as wheel:  # tensorrt/ (8.5) or tensorrt_bindings/
            member = next(n for n in wheel.namelist() if re.fullmatch(r"tensorrt(_bindings)?/__init__\.py", n))
            text = wheel.read(member).decode()
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(text)
    text = cached.read_text()
    return re.sub(r'^__version__ = "[^"]*"', f'__version__ = "{jetpack.trt_version}"', text, count=1, flags=re.M)


def names_the_init_reads(init_text):
    """Free names the __init__.py reads (from the bindings' star import) and the attributes it reads on them."""
    tree = ast.parse(init_text)
    defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    defined |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    defined |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    free = {n for n in loads - defined if n not in dir(builtins) or n == "bool"} - {"__file__"}
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
             and n.value.id in free}
    return free, attrs


def api_names(jetpack):
    return sorted(line.strip() for line in (DATA / f"{jetpack.api}.txt").read_text().splitlines()
                  if line.strip() and not line.startswith("#"))


BINDINGS = '''"""Stand-in for TensorRT {version}'s compiled bindings (JetPack rehearsal): exactly these names; any use of one is
the first real TensorRT call, which raises."""

NAMES = {names!r}
ENUM_MEMBERS = {{"Severity": ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")}}


class FirstRealCall(RuntimeError):
    pass


class Member:
    """An enum value, DataType alias or method of the release: hashable, comparable, not callable."""

    def __init__(self, name):
        self.name = name
        self.__members__ = {{m: Member(m) for m in ENUM_MEMBERS.get(name, ())}}

    def __getattr__(self, name):
        if name in NAMES:
            return Member(name)
        raise AttributeError(f"TensorRT {version} has no {{name!r}} (rehearsal stand-in)")

    def __call__(self, *args, **kwargs):
        raise FirstRealCall("{marker}: " + self.name + "()")

    def __repr__(self):
        return "tensorrt." + self.name


class Binding(type):
    def __getattr__(cls, name):
        if name in NAMES or name in ENUM_MEMBERS:
            return Member(name)
        raise AttributeError(f"TensorRT {version} has no {{cls.__name__}}.{{name}} (rehearsal stand-in)")


def _first_call(self, *args, **kwargs):
    raise FirstRealCall("{marker}: " + self.__class__.__name__ + "()")


__all__ = sorted(NAMES)
for _name in NAMES:
    globals()[_name] = Binding(_name, (), {{"__init__": _first_call}}) if _name[:1].isupper() else Member(_name)
'''

FAKE_PYCUDA_AUTOINIT = f'raise RuntimeError("{MARKER}: pycuda.autoinit (cuInit)")\n'


def fake_board_packages(jetpack, folder):
    """``folder`` with the release's tensorrt package (real __init__.py over the stand-in bindings), a pycuda whose
    autoinit is the first real CUDA call, and a sitecustomize that reports an aarch64 (Jetson) machine."""
    init = release_init(jetpack)
    module = "tensorrt"
    init = init.replace("##TENSORRT_MODULE##", module)
    free, attrs = names_the_init_reads(init)
    names = sorted(set(api_names(jetpack)) | free | (attrs & {"Severity"}))
    package = Path(folder) / "tensorrt"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(init)
    (package / "tensorrt.py").write_text(BINDINGS.format(version=jetpack.trt_version, names=names, marker=MARKER))
    pycuda = Path(folder) / "pycuda"
    pycuda.mkdir(exist_ok=True)
    (pycuda / "__init__.py").write_text("")
    (pycuda / "autoinit.py").write_text(FAKE_PYCUDA_AUTOINIT)
    (pycuda / "driver.py").write_text("")
    (Path(folder) / "sitecustomize.py").write_text("import platform\nplatform.machine = lambda: 'aarch64'  # a Jetson\n")
    return Path(folder)

