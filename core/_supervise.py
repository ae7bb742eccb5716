"""Runs one process isolate and ends it when the isolde process that started it goes away.

isolde starts ``python _supervise.py COMMAND...`` in a new session with a pipe on
its standard input and keeps the write end.  The supervisor runs COMMAND in the
same process group, relays its exit code, and when the pipe reaches end-of-file --
isolde exited, crashed or was killed with ``kill -9`` -- it stops the command
(SIGTERM, then SIGKILL), so no isolate outlives its engine.  Stdlib only, and
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
        child.terminate()
        try:
            child.wait(GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
        os._exit(child.wait() if child.returncode is None else child.returncode)

    threading.Thread(target=orphaned, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main())  # leave at once: the watcher thread may still sit in read()
