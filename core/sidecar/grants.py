"""Action ids: what each may reach, how many of its writes are under way, and revocation.

An action id (``aid``) is handed out by :meth:`Grants.add` for one action and
is valid until :meth:`Grants.revoke`; it names the namespace, workflow and
instance the action runs for, so a request can only reach those three owners.
``revoke`` waits until no request of that id is in the middle of a write, so
nothing an isolate sends lands after its action has ended.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .errors import SidecarError
from .settings import REVOKE_WAIT

if TYPE_CHECKING:
    from ..store import VariableStore

_logger = logging.getLogger("isolde.sidecar")


@dataclass(slots=True, eq=False)
class Grant:
    """What one action id may reach, and how many of its writes are under way."""

    namespace: str
    workflow: str
    instance: str
    log: Callable[[str], None]
    active: int = 0
    revoked: bool = False
    registered: bool = False  # it wrote an instance variable (the instance must remove it at its end)
    store: VariableStore | None = None  # the store its writes go to, when not the sidecar's (a fenced view)


class Grants:
    """The live action ids of one sidecar (thread-safe)."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}
        self._cond = threading.Condition(threading.Lock())

    def add(self, namespace: str, workflow: str, instance: str, log: Callable[[str], None], *,
            store: VariableStore | None = None) -> str:
        """A new, unguessable action id reaching exactly these namespace / workflow / instance scopes."""
        for value, what in ((namespace, "namespace"), (workflow, "workflow"), (instance, "instance id")):
            if not value or "\x00" in value:
                raise SidecarError(f"sidecar grant: {what} must be a non-empty string without NUL, got {value!r}")
        aid = secrets.token_urlsafe(32)
        grant = Grant(namespace, workflow, instance, log, store=store)
        with self._cond:
            self._grants[aid] = grant
        return aid

    def get(self, aid: str) -> Grant | None:
        return self._grants.get(aid)

    def revoke(self, aid: str) -> bool:
        """End an action id once no write or log of it is under way; unknown ids are ignored.
        Returns whether it may have written an instance variable."""
        with self._cond:
            grant = self._grants.pop(aid, None)
            if grant is None:
                return False
            grant.revoked = True
            idle = self._cond.wait_for(lambda: grant.active == 0, timeout=REVOKE_WAIT)
            return grant.registered or not idle

    def revoke_instance(self, instance: str) -> None:
        """End every action id of an instance."""
        with self._cond:
            aids = [aid for aid, g in self._grants.items() if g.instance == instance]
        for aid in aids:
            self.revoke(aid)

    def clear(self) -> None:
        with self._cond:
            for grant in self._grants.values():
                grant.revoked = True
            self._grants.clear()

    def in_flight(self, grant: Grant) -> InFlight:
        """``with grants.in_flight(g):`` marks a store call or log call of ``g`` as under way;
        raises :class:`Revoked` once ``g`` is revoked."""
        return InFlight(self._cond, grant)

    def log_refusal(self, grant: Grant, request: str, status: int, message: str) -> None:
        """Tell the instance log why an isolate's request was refused (isolates
        often ignore the answer); never after the grant was revoked."""
        try:
            with self.in_flight(grant):
                grant.log(f"sidecar: {request} refused ({status}): {message}")
        except Revoked:
            pass
        except Exception as err:  # the log sink failing must not break the answer
            _logger.error("sidecar: instance log failed", exc_info=err)


class Revoked(Exception):
    """The action id was revoked while its request was being served."""


class InFlight:
    """Marks a store operation or log call of a grant as under way (for ``revoke``)."""

    __slots__ = ("_cond", "_grant")

    def __init__(self, cond: threading.Condition, grant: Grant) -> None:
        self._cond = cond
        self._grant = grant

    def __enter__(self) -> None:
        with self._cond:
            if self._grant.revoked:
                raise Revoked
            self._grant.active += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._grant.active -= 1
            if self._grant.active == 0 and self._grant.revoked:
                self._cond.notify_all()
