"""The sidecar's server: the listening socket, its connections (one thread each) and their cap.

The server starts on the first :meth:`Sidecar.grant` (or :attr:`Sidecar.address`),
not before: most workflows never call an isolate.  Several isolde processes on
one machine coexist: when the port is taken, a free one is used and ``notice``
says so, unless ``pinned``, in which case starting fails with a
:class:`SidecarError` (and the action that needed it fails with it).

At most ``MAX_CONNECTIONS`` connections are open.  Every peer is on loopback,
so a cap per peer address would not tell an isolate from a hostile local
program; instead a connection that has carried a request of a live action id
is kept, and when the cap is reached a new connection replaces the oldest one
that has not (one only dripping bytes, or idle).  Only when every open
connection serves a live action id is a new one answered 503 and closed.  So
a flood of slow connections cannot lock the running isolate out.

The accept loop blocks in ``accept`` and is woken by a socket shutdown, so
``close()`` returns at once.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import threading
import time
from typing import Callable

from .addresses import DEFAULT_HOST, bind_address
from .connection import Connection
from .errors import SidecarError
from .grants import Grant, Grants
from ..store import VariableStore
from .routes import Routes
from .settings import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_LOG,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_CONNECTIONS,
    SidecarSettings,
)

_logger = logging.getLogger("isolde.sidecar")


class _Slot:
    """One open connection: its socket, thread, when it opened and the grant it serves."""

    __slots__ = ("sock", "thread", "opened", "grant", "evicted")

    def __init__(self, sock: socket.socket, opened: float) -> None:
        self.sock = sock
        self.thread: threading.Thread | None = None
        self.opened = opened
        self.grant: Grant | None = None
        self.evicted = False


class _Slots:
    """The open connections and the fair cap on them (see the module docstring)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.lock = threading.Lock()
        self.open: dict[socket.socket, _Slot] = {}

    def admit(self, sock: socket.socket) -> _Slot | None:
        """A slot for ``sock``, replacing the oldest connection that serves no live
        action id when the cap is reached; None when every connection serves one."""
        with self.lock:
            if len(self.open) >= self.cap:
                victim: _Slot | None = None
                for slot in self.open.values():
                    if (slot.grant is None or slot.grant.revoked) and (victim is None or slot.opened < victim.opened):
                        victim = slot
                if victim is None:
                    return None
                victim.evicted = True
                del self.open[victim.sock]
                try:
                    victim.sock.shutdown(socket.SHUT_RDWR)  # its thread sees the end and closes it
                except OSError:
                    pass
            slot = _Slot(sock, time.monotonic())
            self.open[sock] = slot
            return slot

    def claim(self, slot: _Slot, grant: Grant) -> None:
        if slot.grant is not grant:
            with self.lock:
                slot.grant = grant

    def release(self, slot: _Slot) -> None:
        with self.lock:
            if self.open.get(slot.sock) is slot:
                del self.open[slot.sock]

    def all(self) -> list[_Slot]:
        with self.lock:
            return list(self.open.values())


class Sidecar:
    """Loopback HTTP server through which a running isolate reads and writes variables and logs.

    Collaborators are passed in: ``store`` (the variable store), and per
    :meth:`grant` the instance log callback; limits come as keyword arguments
    or a :class:`SidecarSettings` (:meth:`from_settings`).
    """

    def __init__(
        self,
        store: VariableStore,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        pinned: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        max_log: int = DEFAULT_MAX_LOG,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.pinned = pinned
        self.max_body = max_body
        self.max_log = max_log
        self.request_timeout = request_timeout
        self.notice: Callable[[str], None] = notice or _logger.warning
        self._bind_host, self._family = bind_address(host)
        self._grants = Grants()
        self._routes = Routes(store, self._grants, max_body=max_body, max_log=max_log)
        self._slots = _Slots(max_connections)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._address = ""
        self._closing = False
        self._closed = False

    @classmethod
    def from_settings(cls, store: VariableStore, settings: SidecarSettings,
                      notice: Callable[[str], None] | None = None) -> Sidecar:
        return cls(store, host=settings.host, port=settings.port, pinned=settings.pinned,
                   max_body=settings.max_body, max_log=settings.max_log,
                   request_timeout=settings.request_timeout, notice=notice)

    # -- public API ----------------------------------------------------------------
    def grant(self, namespace: str, workflow: str, instance: str, log: Callable[[str], None], *,
              store: VariableStore | None = None) -> str:
        """A new, unguessable action id reaching exactly these namespace /
        workflow / instance scopes until :meth:`revoke`; starts the server if needed.
        ``store``: the store as the instance writes to it (a daemon's view fenced by the
        instance's claim), used for this id's writes instead of the sidecar's own."""
        self._start()
        return self._grants.add(namespace, workflow, instance, log, store=None if store is self.store else store)

    def revoke(self, aid: str) -> bool:
        """End an action id.  Returns once no write or log of it is under way,
        so nothing it sends lands after its action ended.  Unknown ids are ignored.
        True when it may have written an instance variable."""
        return self._grants.revoke(aid)

    def revoke_instance(self, instance: str) -> None:
        """End every action id of an instance (it has ended): a call still running for it
        -- a foreach item or parallel branch the state no longer waits for -- can no
        longer write, so nothing lands after the instance's variables were removed."""
        self._grants.revoke_instance(instance)

    @property
    def address(self) -> str:
        """``host:port`` isolates reach the sidecar at (``[::1]:port`` for IPv6);
        starts the server if needed."""
        self._start()
        return self._address

    @property
    def running(self) -> bool:
        return self._listener is not None and not self._closing

    def close(self) -> None:
        """Stop accepting, end open connections and join their threads; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            listener, thread = self._listener, self._thread
        self._grants.clear()
        if listener is None:
            return
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocking accept() (Linux)
        except OSError:
            pass
        if thread is not None:
            thread.join(0.2)
            if thread.is_alive():  # elsewhere shutdown may not wake accept(): connect once
                try:
                    socket.create_connection(listener.getsockname()[:2], timeout=0.5).close()
                except OSError:
                    pass
                thread.join(2.0)
        listener.close()
        slots = self._slots.all()
        for slot in slots:
            try:
                slot.sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked reading
            except OSError:
                pass
        for slot in slots:
            if slot.thread is not None:
                slot.thread.join(2.0)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- listening -------------------------------------------------------------------
    def _start(self) -> None:
        if self._listener is not None and not self._closing:
            return
        with self._lock:
            if self._closed:
                raise SidecarError("the sidecar is closed (its engine was closed)")
            if self._listener is not None:
                return
            listener = self._bind()
            host, port = listener.getsockname()[:2]
            self._address = f"[{host}]:{port}" if self._family == socket.AF_INET6 else f"{host}:{port}"
            thread = threading.Thread(target=self._accept_loop, args=(listener,), name="isolde-sidecar", daemon=True)
            self._listener, self._thread = listener, thread
            thread.start()

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._bind_host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        return sock

    def _bind(self) -> socket.socket:
        try:
            return self._listen(self.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise SidecarError(f"sidecar cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
            if self.pinned:
                raise SidecarError(
                    f"sidecar port {self.port} on {self._bind_host} is taken (another isolde process or program "
                    "listens there) and [sidecar] pinned = true: free the port, choose another [sidecar] port, "
                    "or set pinned = false to let isolde pick a free one"
                ) from None
        try:
            listener = self._listen(0)
        except OSError as exc:
            raise SidecarError(f"sidecar cannot listen on {self._bind_host}: {exc.strerror or exc}") from None
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]:{port}" if self._family == socket.AF_INET6 else f"{host}:{port}"
        self.notice(
            f"sidecar port {self.port} is taken; using {shown} "
            "(isolates learn it from Direktiv-Sidecar / DIREKTIV_SIDECAR)"
        )
        return listener

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closing:
            try:
                sock, _ = listener.accept()
            except OSError as exc:
                if self._closing:
                    break
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: let connections finish first
                continue
            if self._closing:
                sock.close()
                break
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        slot = self._slots.admit(sock)
        if slot is None:
            body = json.dumps({"error": f"too many connections (at most {self._slots.cap}, each serving an action)"}).encode()
            try:
                sock.settimeout(1.0)
                sock.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            except OSError:
                pass
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=self._serve, args=(slot,), name="isolde-sidecar-conn", daemon=True)
        slot.thread = thread
        thread.start()

    def _serve(self, slot: _Slot) -> None:
        slots = self._slots
        try:
            Connection(
                slot.sock, self._routes, self._grants, request_timeout=self.request_timeout,
                claim=lambda grant: slots.claim(slot, grant),
            ).run()
        except Exception as exc:  # a bug must not kill the server, but should be seen
            _logger.error("sidecar: unexpected error while serving a connection", exc_info=exc)
        finally:
            slots.release(slot)
            try:
                slot.sock.shutdown(socket.SHUT_WR)  # a clean end of our answers, then close
            except OSError:
                pass
            slot.sock.close()
