"""Tars from others: only plain files and folders named inside the destination are extracted, every member checked
before anything is written, and a bad archive is one line."""

import io
import tarfile

import pytest

from cosinegate import archives
from cosinegate.errors import CosineGateError

FIX = "make it again."


@pytest.fixture(params=["with filters", "without filters"])
def filters(request, monkeypatch):
    """Each case on this Python and as on one before 3.10.12 / 3.11.4 (no tarfile extraction filters), where the
    member checks alone keep extraction safe."""
    if request.param == "without filters":
        monkeypatch.delattr(tarfile, "data_filter")
    return request.param


def _tar(path, *members):
    """Write a tar of ``members``: (name, bytes) for a file, (name, "->target") for a symlink, (name, "=>target")
    for a hard link, (name, "fifo") for a FIFO, (name, None) for a folder."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
            elif isinstance(data, str) and data.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, data[2:]
            elif isinstance(data, str) and data.startswith("=>"):
                info.type, info.linkname = tarfile.LNKTYPE, data[2:]
            elif data == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            tar.addfile(info)
    return path


def test_plain_files_and_folders_are_extracted_with_plain_permissions(tmp_path, filters):
    """As `tar -C DIR -cf X .` writes them too (a `./` folder first); a folder of mode 000 in the tar could not be
    written or removed after it, so modes are the usual ones."""
    import stat

    path = _tar(tmp_path / "a.tar", ("./", None), ("runs", None), ("runs/a/last.pt", b"state"), ("./top.txt", b"t"))
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("locked")
        info.type, info.mode = tarfile.DIRTYPE, 0
        tar.addfile(info)
    archives.extract(path, tmp_path / "out", FIX)
    assert (tmp_path / "out/runs/a/last.pt").read_bytes() == b"state" and (tmp_path / "out/top.txt").read_bytes() == b"t"
    assert stat.S_IMODE((tmp_path / "out/locked").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out/top.txt").stat().st_mode) == 0o644


BAD = {
    "symlink inside": [("runs/a/loop", "->.")],
    "symlink out": [("runs/evil", "->../../.."), ("runs/evil/x", b"x")],
    "hard link": [("runs/a/last.pt", b"x"), ("runs/b", "=>runs/a/last.pt")],
    "fifo": [("pipe", "fifo")],
    "absolute": [("/tmp/escaped-by-test", b"x")],
    "parent": [("runs/../../escaped", b"x")],
    "backslash": [("..\\escaped", b"x")],
    "nameless file": [("./", b"x")],
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_link_special_file_or_escaping_name_is_refused_before_anything_is_written(tmp_path, kind, filters):
    path = _tar(tmp_path / "bad.tar", ("first.txt", b"written only if all is well"), *BAD[kind])
    with pytest.raises(CosineGateError) as info:
        archives.extract(path, tmp_path / "out", FIX)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and message.endswith(FIX)
    assert not (tmp_path / "out").exists()  # nothing at all, not even the good member before the bad one


def test_the_symlinked_folder_chain_of_cve_2025_4517_writes_nothing_outside(tmp_path, filters):
    """The shape of the published bypass of filter="data" (symlinked folders, then a link through them; the bypass
    itself needs names past PATH_MAX): refused by kind, whatever the lengths."""
    long = "d" * 200
    members = [(long, None), (f"{long}/l", "->" + "../" * 3), (f"{long}/l/escape", b"x"), ("esc", f"->{long}/l/x")]
    path = _tar(tmp_path / "cve.tar", *members)
    with pytest.raises(CosineGateError, match="link"):
        archives.extract(path, tmp_path / "a/b/out", FIX)
    assert not (tmp_path / "a").exists() and not (tmp_path / "escape").exists()


def test_declared_sizes_over_the_cap_are_refused(tmp_path):
    path = _tar(tmp_path / "big.tar", ("a", b"x" * 600), ("b", b"y" * 600))
    with pytest.raises(CosineGateError, match="GiB this toolkit extracts"):
        archives.extract(path, tmp_path / "out", FIX, max_bytes=1000)
    archives.extract(path, tmp_path / "out", FIX, max_bytes=1200)
    assert (tmp_path / "out/b").stat().st_size == 600


def test_more_members_than_the_cap_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    """Empty members cost nothing to compress and a file and memory each to extract: their number is capped too."""
    path = _tar(tmp_path / "many.tar", ("d", None), ("d/a", b""), ("d/b", b""))
    monkeypatch.setattr(archives, "MAX_EXTRACT_MEMBERS", 2)
    with pytest.raises(CosineGateError, match="more than the 2 members this toolkit extracts"):
        archives.extract(path, tmp_path / "out", FIX)
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(archives, "MAX_EXTRACT_MEMBERS", 3)
    archives.extract(path, tmp_path / "out", FIX)
    assert (tmp_path / "out/d/b").is_file()


def test_the_cap_is_checked_before_a_compressed_member_is_inflated(tmp_path):
    """A gzip bomb's first header already declares more than the cap: refused there, before tarfile would inflate
    the member's data to reach the next header (here the data is cut off, so inflating it would fail instead)."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("bomb")
        info.size = 1 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip.compress(raw.getvalue()[:4096]))
    with pytest.raises(CosineGateError, match="GiB this toolkit extracts"):
        archives.check(path, FIX, max_bytes=1000)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_a_long_name_header_is_read_only_up_to_a_cap(tmp_path, fmt):
    """Attacker review: tarfile reads a GNU long-name or pax header whole while looking for the next member (a 300 KB
    .tar.gz declaring a 300 MiB name took 2.4 GB); a header declaring more than 64 KiB is refused before its data
    is read (here the data is cut off, so reading it would fail otherwise). A long path of a few hundred bytes, as
    tarfile writes it in either format, still extracts."""
    import gzip

    name = "d/" + "/".join(["n" * 60] * 5)  # 300 characters: over the 100 of a plain ustar name
    ok = tmp_path / "ok.tar"
    with tarfile.open(ok, "w", format=fmt) as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    archives.extract(ok, tmp_path / "out", FIX)
    assert (tmp_path / "out" / name).read_bytes() == b"ok"

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo("e/" + "n" * (100 << 10))
        tar.addfile(info)
    header = raw.getvalue()[:512]  # the long-name or pax header alone, declaring over 100 KiB that never follow
    path = tmp_path / "long.tar.gz"
    path.write_bytes(gzip.compress(header + b"\0" * 4096))
    with pytest.raises(CosineGateError, match="long-name or pax header declares .* over the 65536 this toolkit reads"):
        archives.check(path, FIX)


def test_a_gnu_sparse_member_is_refused(tmp_path):
    """tarfile reads a sparse header's extension blocks into a list, one per 512 bytes of (compressible) tar."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("sparse")
        info.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(info)
    path = tmp_path / "sparse.tar"
    path.write_bytes(raw.getvalue())
    with pytest.raises(CosineGateError, match="GNU sparse file") as exc:
        archives.extract(path, tmp_path / "out", FIX)
    assert "\n" not in str(exc.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"not a tar at all", b""])
def test_an_unreadable_archive_is_one_line(tmp_path, content):
    path = tmp_path / "junk.tar"
    path.write_bytes(content)
    with pytest.raises(CosineGateError) as info:
        archives.extract(path, tmp_path / "out", FIX)
    assert "\n" not in str(info.value) and str(info.value).endswith(FIX)
