"""Tar archives from others, extracted safely: every member is checked before anything is written.

Only plain files and folders are taken, each named inside the destination (no absolute name, no `..`), and the
sizes the headers declare must sum under a cap, as must the number of members. Links of every kind are refused rather than filtered: Python's
own ``filter="data"`` let a chain of symlinked folders write outside the destination on some releases
(CVE-2025-4517), and a link that stays inside is still followed by a later copy.
"""

import tarfile
from pathlib import PurePosixPath

from cosinegate.errors import CosineGateError

MAX_EXTRACT_BYTES = 8 << 30  # above any state, finals or CIFAR-10 tar this toolkit writes or reads
MAX_EXTRACT_MEMBERS = 200_000  # above the 60,000 images (and their folders) of the CIFAR-10 JPEG tar
MAX_NAME_HEADER_BYTES = 64 << 10  # a GNU long-name or pax header (a long path is a few hundred bytes)


class HeaderRefused(tarfile.TarError):
    """A header tarfile would read whole (or in unbounded parts) before any member check could see it."""


class CheckedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long-name or pax extended header whole into memory (a 300 KB .tar.gz declaring a 300 MiB
    name took 2.4 GB), and a GNU sparse header's extension blocks one by one into a list, while it looks for the
    next member; such headers are refused here before their data is read."""

    def _proc_member(self, tarfile_):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise HeaderRefused(f"member {self.name!r} is a GNU sparse file, which this toolkit never writes")
        long_headers = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                        tarfile.SOLARIS_XHDTYPE)
        if self.type in long_headers and self.size > MAX_NAME_HEADER_BYTES:
            raise HeaderRefused(f"a long-name or pax header declares {self.size} bytes, over the "
                                f"{MAX_NAME_HEADER_BYTES} this toolkit reads")
        return super()._proc_member(tarfile_)


def member_problem(member):
    """Why ``member`` (a TarInfo) may not be extracted, or None."""
    name = PurePosixPath(member.name)
    if not (member.isfile() or member.isdir()):
        return f"member {member.name!r} is a link or a special file, not a plain file or folder"
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        return f"member {member.name!r} names a place outside the folder it is extracted into"
    if member.isfile() and not name.parts:
        return f"member {member.name!r} is a file without a name"
    return None


def checked_members(tar, path, fix, max_bytes=MAX_EXTRACT_BYTES):
    """The members of the open ``tar`` (read from ``path``) to extract, each with plain permissions (rw-r--r--,
    folders rwxr-xr-x: a folder of mode 000 could not be written or removed), or a CosineGateError naming the
    first bad one and ``fix``. The folder itself (`.` or `./`, as `tar -C DIR -cf X .` writes it) is left out."""
    members, total = [], 0
    # one header at a time: a compressed bomb is refused before its data is inflated
    for count, member in enumerate(tar, 1):
        problem = member_problem(member)
        if problem:
            raise CosineGateError(f"{path}: {problem}; {fix}")
        if count > MAX_EXTRACT_MEMBERS:  # empty members compress to almost nothing, each still a file and memory here
            raise CosineGateError(f"{path}: it holds more than the {MAX_EXTRACT_MEMBERS:,} members this toolkit "
                                  f"extracts; {fix}")
        total += member.size if member.isfile() else 0
        if total > max_bytes:
            raise CosineGateError(f"{path}: its files would take more than the {max_bytes / 2**30:g} GiB this "
                                  f"toolkit extracts; {fix}")
        if PurePosixPath(member.name).parts:
            member.mode = 0o755 if member.isdir() else 0o644
            members.append(member)
    return members


def check(path, fix, max_bytes=MAX_EXTRACT_BYTES):
    """The checked members of the tar at ``path`` (see checked_members); an unreadable archive is a one-line
    CosineGateError naming it and ending with ``fix``."""
    try:
        with tarfile.open(path, tarinfo=CheckedTarInfo) as tar:
            return checked_members(tar, path, fix, max_bytes)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise unreadable(path, exc, fix) from None


def extract(path, dest, fix, max_bytes=MAX_EXTRACT_BYTES):
    """Extract the tar at ``path`` into ``dest`` after checking every member (see the module); ``fix`` ends the
    one-line error a bad or unreadable archive raises."""
    # Python before 3.10.12 / 3.11.4 has no extraction filters: the members are checked above either way
    options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(path, tarinfo=CheckedTarInfo) as tar:
            tar.extractall(dest, members=checked_members(tar, path, fix, max_bytes), **options)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise unreadable(path, exc, fix) from None


def unreadable(path, exc, fix):
    """The one-line error of an archive that tarfile or the file system could not read."""
    return CosineGateError(f"{path}: {' '.join(str(exc).split())[:200] or type(exc).__name__}; {fix}")
