"""A live progress line on a terminal for ``isolde run``: ``foreach 'each': 37/100 done, 2 failed``.

States report progress with ``ctx.progress(done, total, failed)`` (``foreach`` and
``parallel`` through ``run_branches``); this observer draws the latest report on one line
of the terminal (``\\r`` and erase-line), erases it when that state is done or its
instance ends, and lets log lines through above it (``write``).  It is used only when
stderr is a terminal: piped output never sees a control character.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

import click

from ..observers import Observer

__all__ = ["RunOutput", "TerminalProgress"]

_ERASE = "\r\x1b[K"


class TerminalProgress(Observer):
    """Draws progress on ``stream`` (a terminal), one line, erased when done."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._line = ""  # what is drawn now ("" : nothing)
        self._owner: tuple[str, str] | None = None  # (instance id, state id) the line is about

    # -- observer ------------------------------------------------------------------
    def progress(self, ctx: Any, done: int, total: int, failed: int) -> None:
        state = ctx.state
        if state is None:
            return
        text = f"{state.type} '{state.id}': {done}/{total} done" + (f", {failed} failed" if failed else "")
        import shutil  # only on a terminal, while a foreach or parallel state runs

        width = shutil.get_terminal_size((80, 24)).columns - 1
        with self._lock:
            self._owner = (ctx.instance_id, state.id)
            self._draw(text[:max(width, 10)])

    def state_done(self, ctx: Any, state_type: str, seconds: float) -> None:
        self._finish(ctx)

    def instance_ended(self, ctx: Any, status: str, error_code: str | None, seconds: float) -> None:
        self._finish(ctx)

    # -- output ------------------------------------------------------------------------
    def write(self, line: str) -> None:
        """Print a whole line above the progress line (which is drawn again under it)."""
        with self._lock:
            shown = self._line
            try:
                self.stream.write((_ERASE if shown else "") + line + "\n" + shown)
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def clear(self) -> None:
        with self._lock:
            self._owner = None
            self._draw("")

    def _finish(self, ctx: Any) -> None:
        if self._owner is None:
            return
        with self._lock:
            if self._owner is not None and self._owner[0] == ctx.instance_id:
                self._owner = None
                self._draw("")

    def _draw(self, text: str) -> None:
        if text == self._line:
            return
        try:
            self.stream.write(_ERASE + text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: progress is not worth failing for
            pass
        self._line = text


class RunOutput:
    """Where ``isolde run`` writes the instance log: ``[state] line`` or JSON objects
    (``--log-format json``), above a live progress line when stderr is a terminal."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.workflow: str | None = None
        self.json = False
        self.progress: Any = None

    def start(self, engine: Any, log_format: str) -> None:
        self.json = log_format == "json"
        if engine.config.data.get("log", {}).get("progress", True) and _is_terminal(sys.stderr):
            self.progress = TerminalProgress(sys.stderr)
            engine.observe(self.progress)

    def instance_log(self, instance: str, top: bool, state: str, message: str) -> None:
        if self.json:
            import time

            from ..logs import json_line

            fields = {"namespace": self.namespace, "workflow": self.workflow if top else None,
                      "instance": instance, "state": state}
            lines = [json_line(time.time(), "info", "isolde.instance", message, fields)]
        else:  # every line of a multi-line message carries the prefix: an isolate's /log body
            # can't pass for isolde's own "isolde: ..." lines
            lines = [f"[{state}] {line}" for line in message.splitlines() or [""]]
        for line in lines:
            if self.progress is not None:
                self.progress.write(line)
            else:
                click.echo(line, err=True)

    def clear(self) -> None:
        if self.progress is not None:
            self.progress.clear()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
