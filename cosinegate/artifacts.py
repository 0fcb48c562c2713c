"""Atomic file writes and content hashes for artifacts and their manifests."""

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def sha256_file(path, chunk=1 << 20):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def input_record(**paths):
    """{name: {"path", "sha256"}} for a report's inputs (None entries are left out)."""
    return {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in paths.items() if path}


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    Nothing half-written is ever left at `path`: on an exception the temporary
    file is removed and the old file (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path, what="JSON file"):
    """Read JSON, turning a missing or corrupt file into a CosineGateError."""
    from cosinegate.errors import CosineGateError

    path = Path(path)
    if not path.is_file():
        raise CosineGateError(f"{what} not found: {path}. Check the path.")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CosineGateError(f"{what} {path} is not valid JSON ({exc}); regenerate it.") from exc
