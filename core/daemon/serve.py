"""``isolde serve DIR``: a Daemon run until SIGTERM / SIGINT."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from .service import Daemon
from .settings import DaemonSettings, configure_logging

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["serve"]


def serve(directory: str, *, engine: Engine, api: str | None, token: str | None, verbose: bool,
          no_api: bool = False, log_format: str | None = None) -> int:
    """Run the daemon until SIGTERM / SIGINT; returns the exit code.  ``log_format``:
    ``text`` (logfmt) or ``json``; None takes ``[log] format``."""
    log = configure_logging(verbose, log_format or engine.config.data.get("log", {}).get("format", "text"))
    settings = DaemonSettings.from_config(engine.config, api=api, token=token)
    if hasattr(signal, "SIGIO"):
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks (see watch.FileReader)
    daemon = Daemon(directory, engine, settings, logger=log)

    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stopping and signum == signal.SIGINT:  # a second Ctrl-C: stop at once, no graceful drain
            log.warning("stopping at once (second Ctrl-C): running instances resume at the next start",
                        extra={"fields": {"signal": name}})
            os._exit(130)
        stopping.append(signum)  # before logging: a second signal may arrive while this one logs
        if signum == signal.SIGINT:
            log.info(f"stopping gracefully: running instances get up to {settings.stop_grace:g}s to finish "
                     "(press Ctrl-C again to stop at once)", extra={"fields": {"signal": name}})
        else:
            log.info("signal received", extra={"fields": {"signal": name}})
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.start(api=not no_api)
    except BaseException:
        daemon.stop()
        raise
    try:
        daemon.wait()
    finally:
        daemon.stop()
    return 0
