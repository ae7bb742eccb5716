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
          no_api: bool = False) -> int:
    """Run the daemon until SIGTERM / SIGINT; returns the exit code."""
    log = configure_logging(verbose)
    settings = DaemonSettings.from_config(engine.config, api=api, token=token)
    if hasattr(signal, "SIGIO"):
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks (see watch.FileReader)
    daemon = Daemon(directory, engine, settings, logger=log)

    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal received", extra={"fields": {"signal": signal.Signals(signum).name}})
        if stopping and signum == signal.SIGINT:  # a second Ctrl-C: stop at once, no graceful drain
            os._exit(130)
        stopping.append(signum)
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
