"""The jq worker process: runs *guarded* jq programs so a runaway one can be killed.

Why a separate process: the jq C library cannot be interrupted from Python, so a program that
loops forever (``def f: f; f``, ``repeat(1)``), backtracks exponentially in a regex, or allocates
until the machine swaps would freeze (or abort) the whole engine if it ran in-process.  The parent
(``isolde.jqexpr.worker.WorkerPool``) sends such programs here, waits with a deadline and
SIGKILLs this process when the deadline passes.  Programs whose *compilation* may be costly are
compiled here too (jq computes constant expressions such as ``"x" * 2000000000`` while compiling).

Why it is tiny: it is started lazily on the first guarded program, so its start-up is on the
critical path of that one call.  It imports only the standard library and the ``jq`` binding,
never the rest of isolde.  The parent starts it by file path (``python .../_jqworker.py``) so the
``isolde`` package ``__init__`` (and whatever it imports) is not loaded; ``python -m
isolde.jqexpr._jqworker`` works too.

Defence in depth, beyond the parent's deadline:
- an address-space limit (``RLIMIT_AS``), so a memory bomb dies here instead of swapping;
- no core dumps (``RLIMIT_CORE`` 0);
- a self-destruct timer per request, compilation included (SIGALRM with its default action,
  which terminates the process even while jq's C code runs) so the worker cannot outlive a
  parent that died mid-call;
- it exits on end of input, i.e. as soon as the parent closes the pipe or dies;
- the parent starts it with a minimal environment, so even ``env`` could not leak secrets.

Wire protocol (binary, over stdin/stdout, all integers big-endian):
- after start-up the worker writes one byte ``R`` (ready);
- request: ``>BII`` (mode, program length, data length), then the program text (UTF-8) and the
  input as JSON text (UTF-8).  Mode 0 = all outputs, mode 1 = first output only, mode 2 = compile
  only (data length 0; the compiled program is cached for later runs);
- response: one kind byte and ``>I`` payload length, then the payload.  Kind ``O``: payload is a
  JSON array of the outputs (empty for mode 2); ``E``: payload is jq's error message (compile or
  runtime); ``L``: the outputs exceeded the output limit (payload empty).  If the worker dies (memory limit, jq abort), the parent sees end
  of file instead of a response.

Command line: ``_jqworker.py MAX_OUTPUT_BYTES MAX_MEMORY_BYTES BACKSTOP_SECONDS``
(``MAX_MEMORY_BYTES`` 0 = no limit).
"""

from __future__ import annotations

import sys

_CACHE_MAX = 512


def _read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes from ``fd``; None on end of file (the parent went away)."""
    import os

    chunks: list[bytes] = []
    left = n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; os.write may write less than asked on a pipe."""
    import os

    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def main(argv: list[str]) -> int:
    """Serve requests until end of input; returns the process exit status."""
    # Imported here, after __main__ removed isolde's package dir from sys.path.
    import contextlib
    import json
    import resource
    import signal
    import struct

    import jq

    max_output = int(argv[0])
    max_memory = int(argv[1])
    backstop = float(argv[2])

    # Ctrl-C in a terminal reaches the whole process group; the parent decides our fate.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGALRM keeps its default action (terminate): that is the point of the backstop timer.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if max_memory > 0:
        try:
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        except (ValueError, OSError):
            pass

    header = struct.Struct(">BII")
    reply = struct.Struct(">cI")
    cache: dict[str, object] = {}

    _write_all(1, b"R")
    while True:
        head = _read_exact(0, header.size)
        if head is None:
            return 0
        mode, plen, dlen = header.unpack(head)
        prog_raw = _read_exact(0, plen)
        data_raw = _read_exact(0, dlen)
        if prog_raw is None or data_raw is None:
            return 0
        source = prog_raw.decode("utf-8")
        outputs: list[object] | None
        try:
            # The backstop covers compiling too: jq computes constant expressions then.
            signal.setitimer(signal.ITIMER_REAL, backstop)
            try:
                program = cache.get(source)
                if program is None:
                    program = jq.compile(source)
                    if len(cache) >= _CACHE_MAX:
                        cache.clear()
                    cache[source] = program
                if mode == 2:
                    outputs = None
                else:
                    value = json.loads(data_raw)
                    if mode == 1:
                        try:
                            outputs = [program.input_value(value).first()]  # type: ignore[attr-defined]
                        except StopIteration:
                            outputs = []
                    else:
                        outputs = program.input_value(value).all()  # type: ignore[attr-defined]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if outputs is None:
                kind, payload = b"O", b""
            else:
                payload = json.dumps(outputs, separators=(",", ":"), ensure_ascii=False).encode()
                kind = b"O"
                if len(payload) > max_output:
                    kind, payload = b"L", b""
        except MemoryError:
            # State after a MemoryError is unreliable: die, the parent reports the limit.
            return 3
        except (ValueError, TypeError) as exc:
            kind, payload = b"E", str(exc).encode("utf-8", "replace")
        _write_all(1, reply.pack(kind, len(payload)) + payload)


if __name__ == "__main__":
    # Started by path, Python put this file's directory (a package dir of isolde) first on sys.path;
    # drop it so no sibling module can shadow the standard library or the jq binding.
    if sys.path and not getattr(sys.flags, "safe_path", False):
        del sys.path[0]
    sys.exit(main(sys.argv[1:]))
