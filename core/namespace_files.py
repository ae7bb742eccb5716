"""Files of the namespace as values: ``scope: file`` in getters and ``files:`` (Direktiv's
Knative era).  A key resolves inside the namespace root (``isolde.workflow.inside_root``);
only a regular file is read (no symlink at the end, no FIFO or device), and at most the
variable size limit of it, whatever its size claims."""

from __future__ import annotations

import os
import stat

from .errors import WorkflowError
from .workflow import Workflow, inside_root


def read_file_scope(workflow: Workflow, key: str, max_bytes: int) -> bytes | None:
    """The bytes of a ``scope: file`` key; None when there is no such file (a getter
    reads null, ``files:`` writes an empty file)."""
    path = inside_root(workflow, "/" + key.lstrip("/"), what="file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise WorkflowError("isolde.files.unsafePath", f"file {key!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                return None
            raise WorkflowError("isolde.files.unsafePath", f"file {key!r} is not a regular file")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise WorkflowError(
                    "direktiv.limits.variable",
                    f"file {key!r} is over the {max_bytes}-byte limit (raise [limits] max_variable_bytes in isolde.toml)",
                )
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


__all__ = ["read_file_scope"]
