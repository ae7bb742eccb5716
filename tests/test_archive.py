"""The archive safety rules (core/files/archive.py, packing.py): real tars made with tarfile, real files."""

from __future__ import annotations

import gzip
import io
import os
import socket
import stat
import tarfile
import time
from pathlib import Path

import pytest

from helpers import tree

from isolde import WorkflowError
from isolde.files import (
    INVALID_CODE,
    LIMIT_CODE,
    MAX_META_BYTES,
    MAX_META_CHAIN,
    UNSAFE_CODE,
    ArchiveLimits,
    extract,
    pack_dir,
    safe_relpath,
)
from isolde.config import Config

LIMITS = ArchiveLimits()


# --------------------------------------------------------------------------- helpers


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.linkname = linkname
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data


def make_tar(members: list[tuple[tarfile.TarInfo, bytes]], *, gz: bool = True, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data else None)
    return buf.getvalue()




def expect_refused(tmp_path: Path, data: bytes, code: str, *words: str, gz: bool = True, limits: ArchiveLimits = LIMITS) -> WorkflowError:
    """Extraction fails with ``code``, the message has ``words``, and nothing is left behind."""
    parent = tmp_path / "parent"
    parent.mkdir()
    before = set(os.listdir(tmp_path))
    with pytest.raises(WorkflowError) as info:
        extract(io.BytesIO(data), parent / "dest", gzip=gz, limits=limits, label="variable 'v'")
    assert info.value.code == code, info.value
    for w in words:
        assert w in info.value.msg, info.value.msg
    assert "variable 'v'" in info.value.msg
    assert os.listdir(parent) == []  # no dest, no temporary directory
    assert set(os.listdir(tmp_path)) == before
    return info.value


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "rel"),
    [("a", "a"), ("/a/b", "a/b"), ("./a//b/", "a/b"), ("/etc/x", "etc/x"), ("/", ""), (".", ""), ("a/./b", "a/b")],
)
def test_safe_relpath_normalises(name: str, rel: str) -> None:
    assert safe_relpath(name) == rel


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "a/../b", "/../x", "a\x00b"])
def test_safe_relpath_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        safe_relpath(name)


# --------------------------------------------------------------------------- extract: good archives


@pytest.mark.parametrize("gz", [True, False])
def test_extract_files_and_directories(tmp_path: Path, gz: bool) -> None:
    data = make_tar(
        [
            member("top.txt", b"top"),
            member("dir", kind=tarfile.DIRTYPE),
            member("dir/inner.txt", b"inner"),
            member("implicit/parent/deep.txt", b"deep"),  # parents not listed
            member("run.sh", b"#!/bin/sh\n", mode=0o4755),  # setuid dropped, x kept
            member("empty", b""),
        ],
        gz=gz,
    )
    dest = tmp_path / "dest"
    extract(io.BytesIO(data), dest, gzip=gz, limits=LIMITS)
    assert tree(dest) == {
        "top.txt": b"top",
        "dir": None,
        "dir/inner.txt": b"inner",
        "implicit": None,
        "implicit/parent": None,
        "implicit/parent/deep.txt": b"deep",
        "run.sh": b"#!/bin/sh\n",
        "empty": b"",
    }
    mode = (dest / "run.sh").stat().st_mode
    assert mode & 0o100 and not mode & (stat.S_ISUID | stat.S_ISGID)
    assert not (dest / "top.txt").stat().st_mode & 0o100
    assert [p for p in os.listdir(tmp_path) if p != "dest"] == []


def test_extract_accepts_direktiv_leading_slash_and_absolute_names(tmp_path: Path) -> None:
    # Direktiv's packer writes "/" for the root and "/sub/x" for members.
    data = make_tar(
        [member("/", kind=tarfile.DIRTYPE), member("/sub", kind=tarfile.DIRTYPE), member("/sub/x", b"x"), member("/etc/passwd", b"mine")]
    )
    dest = tmp_path / "dest"
    extract(io.BytesIO(data), dest, gzip=True, limits=LIMITS)
    assert tree(dest) == {"sub": None, "sub/x": b"x", "etc": None, "etc/passwd": b"mine"}


def test_extract_long_names_use_extended_headers(tmp_path: Path) -> None:
    long = "d" * 120 + "/" + "f" * 150
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        dest = tmp_path / f"dest{fmt}"
        extract(io.BytesIO(make_tar([member(long, b"ok")], fmt=fmt)), dest, gzip=True, limits=LIMITS)
        assert (dest / long).read_bytes() == b"ok"


def test_extract_empty_source_is_an_empty_directory(tmp_path: Path) -> None:
    for gz in (True, False):
        dest = tmp_path / f"dest{gz}"
        extract(io.BytesIO(b""), dest, gzip=gz, limits=LIMITS)
        assert dest.is_dir() and os.listdir(dest) == []


def test_extract_into_existing_empty_directory(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    extract(io.BytesIO(make_tar([member("a", b"1")])), dest, gzip=True, limits=LIMITS)
    assert tree(dest) == {"a": b"1"}


def test_extract_refuses_existing_nonempty_destination(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(WorkflowError) as info:
        extract(io.BytesIO(make_tar([member("a", b"1")])), dest, gzip=True, limits=LIMITS)
    assert info.value.code == UNSAFE_CODE and "already exists" in info.value.msg
    assert tree(dest) == {"keep": b"mine"}
    assert sorted(os.listdir(tmp_path)) == ["dest"]


def test_duplicate_file_member_last_one_wins(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    extract(io.BytesIO(make_tar([member("a", b"first"), member("a", b"second")])), dest, gzip=True, limits=LIMITS)
    assert tree(dest) == {"a": b"second"}


# --------------------------------------------------------------------------- extract: attacks


def test_refuses_dotdot_member(tmp_path: Path) -> None:
    expect_refused(tmp_path, make_tar([member("ok", b"1"), member("../x", b"evil")]), UNSAFE_CODE, "'../x'", "..")
    assert not (tmp_path / "x").exists()


def test_refuses_dotdot_inside_name(tmp_path: Path) -> None:
    expect_refused(tmp_path, make_tar([member("a/../../x", b"evil")]), UNSAFE_CODE, "'a/../../x'")
    assert not (tmp_path / "x").exists()


def test_absolute_member_is_made_relative_and_lands_inside(tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    data = make_tar([member(str(target), b"evil")])  # "/tmp/.../outside.txt"
    dest = tmp_path / "dest"
    extract(io.BytesIO(data), dest, gzip=True, limits=LIMITS)
    assert not target.exists()
    assert (dest / str(target).lstrip("/")).read_bytes() == b"evil"


def test_refuses_symlink_member(tmp_path: Path) -> None:
    err = expect_refused(tmp_path, make_tar([member("link", kind=tarfile.SYMTYPE, linkname="/etc/passwd")]), UNSAFE_CODE, "'link'", "symbolic link")
    assert "/etc/passwd" in err.msg


def test_refuses_hardlink_member(tmp_path: Path) -> None:
    data = make_tar([member("a", b"1"), member("hard", kind=tarfile.LNKTYPE, linkname="/etc/passwd")])
    expect_refused(tmp_path, data, UNSAFE_CODE, "'hard'", "hard link")


@pytest.mark.parametrize(
    ("kind", "word"), [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device"), (tarfile.FIFOTYPE, "FIFO")]
)
def test_refuses_device_and_fifo_members(tmp_path: Path, kind: bytes, word: str) -> None:
    expect_refused(tmp_path, make_tar([member("special", kind=kind)]), UNSAFE_CODE, "'special'", word)


def test_refuses_write_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = make_tar([member("link", kind=tarfile.SYMTYPE, linkname=str(outside)), member("link/evil", b"evil")])
    expect_refused(tmp_path, data, UNSAFE_CODE, "'link'")
    assert os.listdir(outside) == []


def test_refuses_sparse_member(tmp_path: Path) -> None:
    ti, data = member("sparse", b"x" * 512)
    ti.type = tarfile.GNUTYPE_SPARSE
    expect_refused(tmp_path, make_tar([(ti, data)], fmt=tarfile.GNU_FORMAT), UNSAFE_CODE, "'sparse'", "sparse")


def pax_sparse(version: str) -> bytes:
    """A tar with one GNU pax sparse member ``f`` holding ``hello`` (as GNU tar writes
    them: 1.0 keeps its map at the start of the data, 0.0 / 0.1 in the pax records)."""
    if version == "1.0":
        body = b"1\n0\n5\n".ljust(512, b"\0") + b"hello"
        ti = tarfile.TarInfo("GNUSparseFile.0/f")
        ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "f", "GNU.sparse.realsize": "5"}
    else:
        body = b"hello"
        ti = tarfile.TarInfo("f")
        ti.pax_headers = (
            {"GNU.sparse.map": "0,5", "GNU.sparse.size": "5", "GNU.sparse.numblocks": "1"}
            if version == "0.1"
            else {"GNU.sparse.size": "5", "GNU.sparse.numblocks": "1", "GNU.sparse.offset": "0", "GNU.sparse.numbytes": "5"}
        )
    ti.size = len(body)
    return make_tar([(ti, body)], gz=False)


@pytest.mark.parametrize("version", ["0.0", "0.1", "1.0"])
def test_refuses_pax_sparse_members(tmp_path: Path, version: str) -> None:
    """Every sparse form is refused, not only the old GNU 'S' type (issue 12)."""
    expect_refused(tmp_path, pax_sparse(version), UNSAFE_CODE, "'f'", "sparse", gz=False)


def test_refuses_sparse_records_in_a_global_header(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"GNU.sparse.size": "5"}) as tf:
        ti, data = member("f", b"hello")
        tf.addfile(ti, io.BytesIO(data))
    expect_refused(tmp_path, buf.getvalue(), UNSAFE_CODE, "'f'", "sparse", gz=False)


def test_refuses_file_where_directory_was(tmp_path: Path) -> None:
    data = make_tar([member("d", kind=tarfile.DIRTYPE), member("d", b"file now")])
    expect_refused(tmp_path, data, UNSAFE_CODE, "'d'")


def test_decompression_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    # 200 MB of zeros in one member: about 200 KB gzipped.
    ti = tarfile.TarInfo("zeros")
    ti.size = 200 << 20
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:

        class Zeros(io.RawIOBase):
            left = ti.size

            def readinto(self, b: bytearray) -> int:  # type: ignore[override]
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tf.addfile(ti, Zeros())
    bomb = buf.getvalue()
    assert len(bomb) < 1 << 20
    start = time.perf_counter()
    expect_refused(tmp_path, bomb, LIMIT_CODE, "'zeros'", "archive_max_total_bytes", limits=ArchiveLimits(max_total_bytes=10 << 20))
    assert time.perf_counter() - start < 0.5  # stopped at the header, nothing inflated


def test_many_small_members_stop_at_the_total_cap(tmp_path: Path) -> None:
    data = make_tar([member(f"f{i}", bytes(1 << 20)) for i in range(12)])
    limits = ArchiveLimits(max_total_bytes=5 << 20)
    expect_refused(tmp_path, data, LIMIT_CODE, "'f5'", "archive_max_total_bytes", limits=limits)


def test_member_count_cap(tmp_path: Path) -> None:
    data = make_tar([member(f"f{i}", b"x") for i in range(11)])
    expect_refused(tmp_path, data, LIMIT_CODE, "10 members", "archive_max_members", limits=ArchiveLimits(max_members=10))


def test_per_file_cap(tmp_path: Path) -> None:
    data = make_tar([member("small", b"x"), member("big", bytes(2048))])
    expect_refused(tmp_path, data, LIMIT_CODE, "'big'", "archive_max_member_bytes", limits=ArchiveLimits(max_member_bytes=1024))


def _pax_block(size: int) -> tuple[tarfile.TarInfo, bytes]:
    """A raw pax extended header with a ``comment`` of ``size`` bytes."""
    body = b" comment=" + b"x" * size + b"\n"
    n = len(body) + len(str(len(body)))
    n = len(body) + len(str(n))  # the length counts its own digits
    rec = str(n).encode() + body
    assert len(rec) == n
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type = tarfile.XHDTYPE
    ti.size = len(rec)
    return ti, rec


def test_oversized_pax_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # tarfile reads a pax header whole into memory; the guard must see its size first.
    ti, rec = _pax_block(MAX_META_BYTES + 4096)
    data = make_tar([(ti, rec), member("a", b"1")], fmt=tarfile.USTAR_FORMAT)
    expect_refused(tmp_path, data, LIMIT_CODE, "extended", str(MAX_META_BYTES))


def test_long_chain_of_extended_headers_is_refused(tmp_path: Path) -> None:
    ti, rec = _pax_block(64)
    data = make_tar([(ti, rec)] * (MAX_META_CHAIN + 1) + [member("a", b"1")], fmt=tarfile.USTAR_FORMAT)
    expect_refused(tmp_path, data, UNSAFE_CODE, "extended headers in a row")


def test_a_few_extended_headers_are_fine(tmp_path: Path) -> None:
    ti, rec = _pax_block(64)
    data = make_tar([(ti, rec), member("a", b"1")], fmt=tarfile.USTAR_FORMAT)
    extract(io.BytesIO(data), tmp_path / "dest", gzip=True, limits=LIMITS)
    assert tree(tmp_path / "dest") == {"a": b"1"}


@pytest.mark.parametrize(
    ("data", "gz"),
    [
        (b"this is not gzip", True),
        (b"x" * 1024, False),
        (gzip.compress(b"not a tar at all" * 100), True),
    ],
)
def test_garbage_is_invalid(tmp_path: Path, data: bytes, gz: bool) -> None:
    expect_refused(tmp_path, data, INVALID_CODE, "not a valid", gz=gz)


def test_truncated_archive_is_invalid(tmp_path: Path) -> None:
    data = make_tar([member("a", os.urandom(100_000))], gz=False)
    expect_refused(tmp_path, data[:50_000], INVALID_CODE, "not a valid tar", gz=False)
    data = make_tar([member("a", os.urandom(100_000))], gz=True)
    (tmp_path / "parent").rmdir()
    expect_refused(tmp_path, data[: len(data) // 2], INVALID_CODE, "not a valid tar.gz")


# --------------------------------------------------------------------------- pack_dir


def _sample_tree(root: Path) -> None:
    (root / "b").mkdir(parents=True)
    (root / "b" / "z.txt").write_bytes(b"z")
    (root / "b" / "a.txt").write_bytes(b"a")
    (root / "a-b").write_bytes(b"dash")
    (root / "empty").mkdir()
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "run.sh").chmod(0o750)
    (root / "A").write_bytes(b"upper")


def pack(src: Path, limits: ArchiveLimits = LIMITS) -> bytes:
    buf = io.BytesIO()
    pack_dir(src, buf, limits=limits)
    return buf.getvalue()


def test_pack_dir_names_sorted_relative_and_metadata_zeroed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _sample_tree(src)
    data = pack(src)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        members = tf.getmembers()
    # sorted per directory by name bytes; a directory is followed by its contents
    assert [m.name for m in members] == ["A", "a-b", "b", "b/a.txt", "b/z.txt", "empty", "run.sh"]
    for m in members:
        assert not m.name.startswith(("/", "./"))
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.isdir() or m.isreg()
    modes = {m.name: m.mode for m in members}
    assert modes["b"] == 0o755 and modes["A"] == 0o644 and modes["run.sh"] == 0o755


def test_pack_dir_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _sample_tree(src)
    first = pack(src)
    os.utime(src / "A", (1, 1))  # times do not matter
    assert pack(src) == first
    assert first[4:8] == b"\0\0\0\0"  # gzip header mtime
    dest = tmp_path / "dest"
    extract(io.BytesIO(first), dest, gzip=True, limits=LIMITS)
    assert tree(dest) == tree(src)


def test_pack_dir_refuses_symlink_without_following(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "leak").symlink_to(secret)
    out = io.BytesIO()
    with pytest.raises(WorkflowError) as info:
        pack_dir(src, out, limits=LIMITS)
    assert info.value.code == UNSAFE_CODE
    assert "'sub/leak'" in info.value.msg and "symbolic link" in info.value.msg
    assert b"TOPSECRET" not in out.getvalue()


def test_pack_dir_refuses_symlinked_directory_and_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("x")
    src = tmp_path / "src"
    src.mkdir()
    (src / "d").symlink_to(outside)
    with pytest.raises(WorkflowError) as info:
        pack(src)
    assert "'d'" in info.value.msg and "symbolic link" in info.value.msg
    link = tmp_path / "root-link"
    link.symlink_to(outside)
    with pytest.raises(WorkflowError) as info:
        pack(link)
    assert info.value.code == UNSAFE_CODE and "symbolic link" in info.value.msg


def test_pack_dir_refuses_fifo_and_socket(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    with pytest.raises(WorkflowError) as info:
        pack(src)  # must not block on the FIFO
    assert "'pipe'" in info.value.msg and "FIFO" in info.value.msg
    os.unlink(src / "pipe")
    sock_dir = tmp_path / "s"  # AF_UNIX paths are short
    sock_dir.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_dir / "sock"))
        with pytest.raises(WorkflowError) as info:
            pack(sock_dir)
    assert "'sock'" in info.value.msg and "socket" in info.value.msg


def test_pack_dir_refuses_device(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    try:
        os.mknod(src / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    with pytest.raises(WorkflowError) as info:
        pack(src)
    assert "'null'" in info.value.msg and "device" in info.value.msg


def test_pack_dir_limits(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(b"x" * 100)
    with pytest.raises(WorkflowError) as info:
        pack(src, ArchiveLimits(max_members=4))
    assert info.value.code == LIMIT_CODE and "archive_max_members" in info.value.msg
    with pytest.raises(WorkflowError) as info:
        pack(src, ArchiveLimits(max_member_bytes=99))
    assert "'f0'" in info.value.msg and "archive_max_member_bytes" in info.value.msg
    with pytest.raises(WorkflowError) as info:
        pack(src, ArchiveLimits(max_total_bytes=250))
    assert "archive_max_total_bytes" in info.value.msg


def test_archive_limits_from_config() -> None:
    cfg = Config({"limits": {"archive_max_members": 5}})
    cfg.validate()
    assert ArchiveLimits.from_config(cfg) == ArchiveLimits(max_members=5)


def test_directories_implied_by_names_count_as_members(tmp_path: Path) -> None:
    """A few members with long paths must not create an inode bomb of directories."""
    import io
    import tarfile as tf

    buf = io.BytesIO()
    with tf.open(fileobj=buf, mode="w:gz") as t:
        for i in range(20):
            info = tf.TarInfo(f"b{i}/" + "a/" * 100 + "f")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    dest = tmp_path / "out"
    with pytest.raises(WorkflowError) as ei:
        extract(buf, dest, gzip=True, limits=ArchiveLimits(max_members=500))
    assert ei.value.code == "direktiv.limits.archive" and "directories included" in ei.value.msg
    assert not dest.exists() and not list(tmp_path.glob(".isolde-extract-*"))


def test_too_deep_or_too_long_names_are_unsafe(tmp_path: Path) -> None:
    import io
    import tarfile as tf

    for name in ("a/" * 200 + "f", "x" * 2000):
        buf = io.BytesIO()
        with tf.open(fileobj=buf, mode="w") as t:
            info = tf.TarInfo(name)
            info.size = 0
            t.addfile(info, io.BytesIO(b""))
        buf.seek(0)
        with pytest.raises(WorkflowError) as ei:
            extract(buf, tmp_path / "d", gzip=False, limits=ArchiveLimits())
        assert ei.value.code == "isolde.archive.unsafe"


def test_remove_tree_handles_depth_beyond_recursion_and_no_links(tmp_path: Path) -> None:
    from isolde.files import remove_tree

    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "k").write_text("k")
    root = tmp_path / "deep"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.mkdir("deep", dir_fd=fd)
        cur = os.open("deep", os.O_RDONLY, dir_fd=fd)
        for _ in range(3000):  # deeper than Python's recursion limit, longer than PATH_MAX
            os.mkdir("d", dir_fd=cur)
            nxt = os.open("d", os.O_RDONLY, dir_fd=cur)
            os.close(cur)
            cur = nxt
        os.symlink(str(outside), "link", dir_fd=cur)
        os.chmod(cur, 0o500)  # an isolate took the write bit
        os.close(cur)
    finally:
        os.close(fd)
    remove_tree(str(root))
    assert not root.exists()
    assert (outside / "k").read_text() == "k"
