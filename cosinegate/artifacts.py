"""Atomic file writes, folder swaps, run-folder locks and content hashes for artifacts and their manifests.

Temporary names carry the writer's pid (``.<name>.<pid>.<random>.tmp``), so a later writer removes
what a killed one left behind (``remove_stale``) without touching a live writer's files.
"""

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from cosinegate.errors import CosineGateError
from cosinegate.schema import MAX_DEPTH, depth

# errors of the place written to, not of the program: one line naming the path
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR, errno.EEXIST}


def file_digest(path, algorithm="sha256", chunk=1 << 20):
    """Hex digest of a file's bytes, read in chunks (the one file hasher of the package)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    return file_digest(path, "sha256")


def input_record(**paths):
    """{name: {"path", "sha256"}} for a report's inputs (None entries are left out)."""
    return {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in paths.items() if path}


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path, exc):
    """The one-line CosineGateError for an OSError while writing ``path``."""
    why = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
           errno.EISDIR: "it is a directory", errno.ENOTDIR: "a parent is not a directory",
           errno.EEXIST: "a file is in the way of a folder"}.get(exc.errno, exc.strerror)
    return CosineGateError(f"cannot write {path} ({why}); choose a writable output path with free space.")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder, prefix):
    """Remove ``folder/<prefix><pid>.*`` temporaries whose writer process is gone; return how many."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = pattern.match(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.remove(entry.path)
                    removed += 1
    return removed


def temp_prefix(name):
    """Prefix of this process's temporaries for ``name`` (hidden, pid-tagged)."""
    return f".{name}.{os.getpid()}."


def not_writable_file(path):
    """Why an existing ``path`` must not be replaced by a written file (None when it is absent or a regular file).

    A symlink would be replaced (or, opened, written through), a FIFO or device would be replaced or block.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link (it would be replaced, or written through)"
    if stat.S_ISDIR(mode):
        return "is a folder"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


# the fix for a missing input file, by what it is (any other: check the path); every "not found" of these reads it
MISSING_FIX = {
    "checkpoint": "train one with `cosinegate train` or fix the path",
    "ONNX file": "export one with `cosinegate export` or fix the path",
    "engine": "check the path (build_on_device.sh writes engines to the bundle's results/ folder)",
    "calibration cache": "check the path or rerun calibration",
    "If cost table": "write one with `cosinegate bench --if-cost --json FILE` or fix the path",
}


def check_input_file(path, what, missing=None, inside=None):
    """Refuse in one line an input ``what`` (a checkpoint, an ONNX file) that is a folder or is not there; ``missing``:
    the fix for a missing one (default: MISSING_FIX's); ``inside``: the file such a folder usually holds (a run
    folder's best.pt)."""
    path = Path(path)
    missing = missing or MISSING_FIX.get(what, "check the path")
    if path.is_dir():
        raise CosineGateError(f"{what} {path} is a folder; pass " + (f"the file in it (e.g. {path / inside})." if inside
                                                                     else "a file."))
    if not path.is_file():
        raise CosineGateError(f"{what} {path} not found; {missing}.")


def check_checkpoint_file(path):
    """check_input_file for a checkpoint: a run folder names its best.pt, a missing file `cosinegate train`."""
    check_input_file(path, "checkpoint", inside="best.pt")


def is_readable_file(path):
    """True for a regular file (after links): a FIFO would block a reader, a loop or dangling link cannot be read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def same_file(a, b):
    """True when paths ``a`` and ``b`` name one existing file (by inode: links and ``..`` included)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_clobbering(inputs, files=(), folders=()):
    """Before any work: refuse an output that is one of the command's inputs, or that is not a plain file/folder.

    ``inputs``: {what: path} read by the command (None skipped); ``files``/``folders``: {flag: path} written
    (a folder output is replaced whole, so no input may lie inside it).
    """
    inputs = {what: path for what, path in dict(inputs).items() if path}
    for flag, path in dict(files).items():
        if not path:
            continue
        why = not_writable_file(path)
        if why:
            raise CosineGateError(f"{flag} {path} {why}; name a new or regular file to write.")
        why = None if str(path) == "-" else unwritable_place(os.path.dirname(os.path.abspath(path)))  # "-": stdout
        if why:
            raise CosineGateError(f"{flag} {path} {why}; name a file in a folder you can write.")
        for what, source in inputs.items():
            if same_file(path, source):
                raise CosineGateError(f"{flag} {path} is the {what} {source} this command reads; name another file to write.")
    for flag, path in dict(folders).items():
        if not path:
            continue
        if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
            raise CosineGateError(f"{flag} {path} is a symbolic link or not a folder; name a plain folder to write.")
        why = unwritable_place(os.path.dirname(os.path.abspath(path)))  # a folder output is staged beside it, renamed
        if why:
            raise CosineGateError(f"{flag} {path} {why}; name a folder you can write.")
        for what, source in inputs.items():
            if _inside(source, path):
                raise CosineGateError(f"{flag} {path} holds the {what} {source} this command reads and would be replaced; "
                                      "name another folder to write.")


def unwritable_place(folder):
    """Why nothing can be written in ``folder`` (made if missing): the nearest part of it that exists is not a
    folder, or not one this user may write (a read-only mount included). None when it can be."""
    existing = Path(os.path.abspath(folder))
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"lies under {existing}, which is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"lies in {existing}, which this user cannot write"
    return None


def _inside(path, folder):
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    Nothing half-written is ever left at `path`: on an exception the temporary
    file is removed and the old file (if any) is untouched. Write errors of the place
    (read-only, full disk, a directory in the way) become one-line CosineGateErrors.
    """
    path = Path(path)
    if path.is_dir():
        raise CosineGateError(f"{path} is a directory; name a file to write (e.g. {path / 'out'}).")
    why = not_writable_file(path)
    if why:
        raise CosineGateError(f"{path} {why}; name a new or regular file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path.parent, f".{path.name}.")
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            raise write_error(path, exc) from exc
        raise


def _exchange(a, b):
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def staging_dir(final):
    """A fresh hidden, pid-tagged folder beside ``final`` to build a multi-file artifact in (stale ones removed)."""
    final = Path(final)
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise CosineGateError(f"{final} is a symbolic link or not a folder; name a plain folder to write (or remove it).")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent, f".{final.name}.")
        staged = Path(tempfile.mkdtemp(prefix=temp_prefix(final.name), suffix=".tmp", dir=final.parent))
        os.chmod(staged, 0o777 & ~_umask())  # mkdtemp makes 0700; the published folder gets the usual permissions
        return staged
    except OSError as exc:
        raise write_error(final, exc) from exc


def publish_dir(staged, final):
    """Make the complete folder ``staged`` appear at ``final`` in one step, replacing what was there.

    With RENAME_EXCHANGE (Linux) readers see the whole old folder or the whole new one, even across a
    kill; elsewhere the old folder is moved aside for the instant between two renames.
    """
    staged, final = Path(staged), Path(final)
    if not final.exists():
        os.rename(staged, final)
        return
    if _exchange(staged, final):
        shutil.rmtree(staged)  # now the old folder
        return
    aside = Path(f"{staged}.old")
    os.rename(final, aside)
    os.rename(staged, final)
    shutil.rmtree(aside)


@contextlib.contextmanager
def folder_lock(folder, what):
    """Hold an exclusive lock on ``folder`` (flock on the folder itself) or refuse at once with a CosineGateError."""
    import fcntl

    folder = Path(folder)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CosineGateError(f"{folder} is in use by another {what} (it holds the folder's lock); "
                                  "wait for it to finish or choose another --out.") from None
        yield
    finally:
        os.close(fd)


def append_line(path, line):
    """Append one whole line to ``path`` or nothing: a partial line (a full disk, a kill) is cut off again,
    and a partial line an earlier writer left at the end is dropped first."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size:
            os.lseek(fd, max(0, size - 65536), os.SEEK_SET)
            tail = os.read(fd, 65536)
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                size = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
                os.ftruncate(fd, size)
        try:
            os.lseek(fd, size, os.SEEK_SET)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise write_error(path, exc) from exc
    finally:
        os.close(fd)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


_report_stdout = None  # the real stdout while report_on_stdout() sends every other line to stderr


@contextlib.contextmanager
def report_on_stdout():
    """Inside, print() goes to stderr and a ``-`` report (atomic_write_json) to stdout: ``--json - | jq`` reads the
    JSON alone. File descriptor 1 points at stderr too, so what C libraries and child processes write there stays
    out of the report."""
    global _report_stdout
    for stream in (sys.stdout, sys.stderr):  # what was written before keeps its place; None when closed (>&-)
        if stream is not None:
            stream.flush()
    saved = None
    with contextlib.suppress(AttributeError, ValueError, OSError):  # stdout is no descriptor: print() alone moves
        if sys.stdout.fileno() == 1:
            saved = os.dup(1)
            os.dup2(2, 1)
    _report_stdout = sys.stdout if saved is None else os.fdopen(saved, "w", encoding="utf-8")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        try:
            if saved is not None:
                _report_stdout.flush()  # a reader gone (| head) raises here: fd 1 is restored all the same
        finally:
            if saved is not None:
                os.dup2(saved, 1)
                with contextlib.suppress(OSError):
                    _report_stdout.close()
            _report_stdout = None


def atomic_write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically; ``-`` prints it to stdout instead."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    if str(path) == "-":
        print(text, end="", flush=True, file=_report_stdout or sys.stdout)
        return
    atomic_write_text(path, text)


MAX_JSON_BYTES = 64 << 20


def read_json(path, what="JSON file", mapping=True):
    """Read JSON (a JSON object unless ``mapping=False``), turning a missing, corrupt, oversized, too deeply nested
    or wrongly shaped file into a one-line CosineGateError."""
    path = Path(path)
    check_input_file(path, what)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise CosineGateError(f"{what} {path} is over {MAX_JSON_BYTES >> 20} MiB, not one this toolkit writes; regenerate it.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CosineGateError(f"{what} {path} is not valid JSON ({' '.join(str(exc).split())[:200]}); regenerate it.") from None
    except RecursionError:
        data = None
    if data is None or depth(data) > MAX_DEPTH:
        raise CosineGateError(f"{what} {path} is nested over {MAX_DEPTH} deep (or empty), not one this toolkit writes; regenerate it.")
    if mapping and not isinstance(data, dict):
        raise CosineGateError(f"{what} {path} holds a JSON {type(data).__name__}, not an object; regenerate it.")
    return data
