"""Runs one process isolate and ends it when the isolde process that started it goes away.

isolde starts ``python _supervise.py COMMAND...`` in a new session with a pipe on
its standard input and keeps the write end.  The supervisor runs COMMAND in the
same process group, relays its exit code, and when the pipe reaches end-of-file --
isolde exited, crashed or was killed with ``kill -9`` -- it stops the command
(SIGTERM to its whole process group, then SIGKILL), so no isolate -- nor a
process it started -- outlives its engine.  Stdlib only, and
started by path, so it imports nothing of isolde.
"""

import os
import signal
import subprocess
import sys
import threading

GRACE = 3.0


def main() -> int:
    command = sys.argv[1:]
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"cannot start {command[0]!r}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 127

    def orphaned() -> None:
        try:
            while os.read(0, 4096):  # raw fd: no buffered-reader lock to trip over at exit
                pass
        except OSError:
            pass
        # The whole process group (this supervisor leads it): a wrapper command such as
        # `bash -c "python server.py"` must not leave the real server running.
        try:
            os.killpg(0, signal.SIGTERM)  # reaches this process too: its handler only forwards
        except OSError:
            pass
        try:
            child.wait(GRACE)
        except subprocess.TimeoutExpired:
            pass
        code = child.returncode if child.returncode is not None else 137
        try:
            os.killpg(0, signal.SIGKILL)  # stragglers, and this supervisor with them
        finally:
            os._exit(code)

    threading.Thread(target=orphaned, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main())  # leave at once: the watcher thread may still sit in read()
