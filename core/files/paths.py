"""Touching paths an isolate or an archive could have planted (SPEC §4.3, §7).

Every module of :mod:`isolde.files` opens files through the flags here (a link
at the end of a path is never followed, a FIFO never blocks an open), names
archive members and ``as`` paths through :func:`safe_relpath`, and removes
trees with :func:`remove_tree`.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Final

from ..errors import WorkflowError

__all__ = [
    "DIR_FLAGS",
    "READ_FLAGS",
    "WRITE_FLAGS",
    "MAX_DEPTH",
    "MAX_NAME_BYTES",
    "file_kind",
    "open_scope",
    "open_output",
    "remove_tree",
    "safe_relpath",
    "write_all",
]

#: Deepest directory nesting a name may have or pack_dir follows (one open descriptor per level).
MAX_DEPTH: Final = 128
#: Longest member name or ``as`` path in bytes (PATH_MAX is 4096).
MAX_NAME_BYTES: Final = 1024

_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)

DIR_FLAGS: Final = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
# O_NONBLOCK: if a file is swapped for a FIFO between lstat and open, the open
# must not hang waiting for a writer.
READ_FLAGS: Final = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC


def safe_relpath(name: str) -> str:
    """Normalise an archive member name or an ``as`` path to ``a/b/c``.

    Leading slashes are stripped (Direktiv's packer writes ``/a/b``), empty
    and ``.`` components dropped; ``""`` means the root itself.  Raises
    ValueError with the reason for a ``..`` component or a NUL byte: a name
    with ``..`` is refused even when it would stay inside, because nothing
    legitimate needs it and resolving it safely needs the filesystem.
    """
    if "\x00" in name:
        raise ValueError("contains a NUL byte")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ValueError(f"is longer than {MAX_NAME_BYTES} bytes")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError("has a '..' component (names must stay inside the folder)")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"is nested deeper than {MAX_DEPTH} directories")
    return "/".join(parts)


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def write_all(fd: int, data: Any) -> None:
    """Write a whole bytes-like object to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# --------------------------------------------------------------------------- out/<scope>


def _unsafe_dir(root_fd: int, rel: str, exc: OSError) -> WorkflowError:
    try:
        st = os.stat(rel, dir_fd=root_fd, follow_symlinks=False)
        what = "a regular file" if stat.S_ISREG(st.st_mode) else f"a {file_kind(st.st_mode)}"
    except OSError:
        what = f"unreadable ({exc.strerror})"
    return WorkflowError("isolde.files.unsafe", f"{rel} in the action folder is {what}, not a directory; it is never followed")


def open_scope(root_fd: int, scope: str) -> int | None:
    """A directory fd for ``out/<scope>`` of the folder ``root_fd``; None if the
    isolate removed it.  Every step refuses a link (``isolde.files.unsafe``)."""
    try:
        out = os.open("out", DIR_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unsafe_dir(root_fd, "out", exc) from None
    try:
        return os.open(scope, DIR_FLAGS, dir_fd=out)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unsafe_dir(root_fd, f"out/{scope}", exc) from None
    finally:
        os.close(out)


def open_output(root_fd: int, scope: str, name: str) -> int | None:
    """A read fd for ``out/<scope>/<name>`` (never through a link), or None."""
    try:
        sfd = open_scope(root_fd, scope)
    except WorkflowError:
        return None
    if sfd is None:
        return None
    try:
        return os.open(name, READ_FLAGS, dir_fd=sfd)
    except OSError:
        return None
    finally:
        os.close(sfd)


# --------------------------------------------------------------------------- removal


def remove_tree(path: str) -> None:
    """Remove a directory tree, best effort: iterative (any depth, where ``shutil.rmtree``
    recurses), through directory descriptors (no path-length limit), never following a
    link, and giving back the permissions an isolate may have taken from a directory."""
    try:
        top = os.open(path, DIR_FLAGS)
    except OSError:
        return
    stack: list[tuple[int, str]] = [(top, "")]
    stuck: set[tuple[int, int]] = set()
    try:
        while stack:
            fd = stack[-1][0]
            child = None
            try:
                entries = list(os.scandir(fd))
            except OSError:
                entries = []
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        if (st.st_dev, st.st_ino) in stuck:
                            continue
                        try:
                            child = os.open(e.name, DIR_FLAGS, dir_fd=fd)
                        except PermissionError:
                            os.chmod(e.name, 0o700, dir_fd=fd)
                            child = os.open(e.name, DIR_FLAGS, dir_fd=fd)
                        stack.append((child, e.name))
                        break
                    os.unlink(e.name, dir_fd=fd)
                except OSError:
                    continue
            if child is not None:
                continue
            done_fd, name = stack.pop()
            st = os.fstat(done_fd)
            os.close(done_fd)
            if stack:
                try:
                    os.rmdir(name, dir_fd=stack[-1][0])
                except OSError:
                    stuck.add((st.st_dev, st.st_ino))
    finally:
        for fd, _ in stack:
            os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
