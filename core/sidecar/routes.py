"""What ``/var`` and ``/log`` mean (SPEC §4.4): a parsed request in, an answer out.

The HTTP framing (limits, timeouts, keep-alive) is ``framing.py``'s and ``connection.py``'s;
this module sees a request as an :class:`Exchange` and reads its body only
once the request is accepted (so ``Expect: 100-continue`` is answered only
then, and an oversized body is refused before it is sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Mapping, Protocol, cast
from urllib.parse import unquote_plus, urlsplit

from ..store import Put, Ref, StoreError, VariableStore, check_key, check_scope
from .body import Body
from .addresses import is_loopback_host
from .grants import Grant, Grants, Revoked
from .refused import Refused

OCTETS: Final[str] = "application/octet-stream"
_INVALID_KEY: Final[str] = "direktiv.var.invalidKey"
_FULL: Final[str] = "isolde.store.full"


class Exchange(Protocol):
    """One request as the connection hands it over."""

    @property
    def method(self) -> str: ...

    @property
    def target(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Header fields by lower-case name (repeated fields joined with ", ")."""
        ...

    def read_body(self, limit: int, setting: str) -> Body:
        """The whole body, refused with 413 (naming ``setting``) when over ``limit`` bytes."""
        ...

    def claim(self, grant: Grant) -> None:
        """The request carries the live action id of ``grant`` (its connection is kept when the cap is reached)."""
        ...


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


OK: Final[Answer] = Answer(200)


def etag(version: int) -> bytes:
    """A variable version as a strong entity tag (RFC 9110 §8.8.3): ``"<version>"``."""
    return b'"%d"' % version


class Routes:
    """Serves ``/var`` and ``/log`` for the action ids in ``grants`` on ``store``."""

    def __init__(self, store: VariableStore, grants: Grants, *, max_body: int, max_log: int) -> None:
        self.store = store
        self.grants = grants
        self.max_body = max_body
        self.max_log = max_log
        self._host_ok: set[str] = set()

    def serve(self, ex: Exchange) -> Answer:
        """The answer to ``ex``; raises :class:`Refused` for an error answer (its
        ``grant`` is set when the action id was valid, to log the refusal there)."""
        headers = ex.headers
        if "origin" in headers or "sec-fetch-site" in headers:
            raise Refused(403, "requests from web browsers are refused (the request has an Origin or Sec-Fetch-Site header)")
        host = headers.get("host")
        if host is not None and host not in self._host_ok:
            if not is_loopback_host(host):
                raise Refused(403, f"Host {host[:100]!r} is not a loopback address (use 127.0.0.1, localhost or [::1])")
            if len(self._host_ok) < 64:
                self._host_ok.add(host)  # isolates send one of a few Host values, on every request
        path, query_text = _split_target(ex.target)
        if path not in ("/var", "/log"):
            raise Refused(404, f"no such path {path[:100]!r} (the sidecar serves /var and /log)")
        method = ex.method
        if method not in ("GET", "POST"):
            refused = Refused(405, f"method {method[:20]} is not allowed on {path} (use GET or POST)")
            refused.headers.append((b"Allow", b"GET, POST"))
            raise refused
        query = _query(query_text)
        grant = self.grants.get(query.get("aid", ""))
        if grant is None:
            raise Refused(404, "unknown action id (aid): it is valid only while its action runs")
        ex.claim(grant)
        try:
            if path == "/var":
                return self._var(ex, grant, query, method == "POST")
            return self._log(ex, grant, query, method == "POST")
        except Refused as exc:
            if not grant.revoked and exc.status != 412:  # a lost compare-and-set race is routine
                exc.grant = grant
            raise
        except Revoked:
            raise Refused(404, "the action id (aid) was revoked: its action has ended") from None
        except StoreError as exc:
            code = getattr(exc, "code", "")
            if getattr(exc, "instance_lost", False):  # another worker holds the instance now (its claim)
                raise Refused(409, f"{exc} (this instance now runs on another worker: nothing more of "
                                   "this action is kept)", grant=grant) from None
            status = 400 if code == _INVALID_KEY else 507 if code == _FULL else 500
            raise Refused(status, f"variable store: {exc}", grant=grant) from None

    # -- /var ---------------------------------------------------------------------
    def _var(self, ex: Exchange, grant: Grant, query: dict[str, str], post: bool) -> Answer:
        scope = query.get("scope") or "instance"
        key = query.get("key", "")
        try:
            check_scope(scope)
            check_key(key)
        except StoreError as exc:
            raise Refused(400, str(exc)) from None
        owner = grant.instance if scope == "instance" else grant.workflow if scope == "workflow" else ""
        ref = Ref(grant.namespace, scope, owner, key)
        store = grant.store or self.store  # the instance's own view: writes fenced by its claim
        if not post:
            with self.grants.in_flight(grant):
                var = store.get(ref)
            if var is None:
                return OK
            headers = [(b"ETag", etag(var.version))]
            if var.mime:
                headers.append((b"Content-Type", _header_safe(var.mime)))
            return Answer(200, var.data, headers)
        expected = _precondition(ex.headers)
        with ex.read_body(self.max_body, "[sidecar] max_body and [limits] max_variable_bytes") as body:
            size = body.size
            # The store's write takes a memoryview (of the spooled file) as well as bytes.
            data = cast(bytes, body.data) if size else None
            mime = (ex.headers.get("content-type") or OCTETS) if size else OCTETS
            register = (grant.namespace, grant.instance) if scope == "instance" and size else None
            if expected is _UNCONDITIONAL:
                with self.grants.in_flight(grant):
                    grant.registered = grant.registered or register is not None
                    store.write([Put(ref, data, mime)], register_instance=register)
                return OK
            want = cast("int | None", expected)
            with self.grants.in_flight(grant):
                if register is not None:
                    grant.registered = True
                    store.write([], register_instance=register)  # before the variable can exist
                done = store.compare_and_set(ref, want, data, mime)
                current = None if done else store.get(ref)
        if not done:
            now = f"is at version {current.version}" if current is not None else "does not exist"
            refused = Refused(412, f"variable {key!r} ({scope}) {now}: the precondition failed, nothing was written "
                                   "(read it again and retry with its new ETag)")
            if current is not None:
                refused.headers.append((b"ETag", etag(current.version)))
            raise refused
        if data is None:
            return OK
        return Answer(200, b"", [(b"ETag", etag(done))])  # the new version: a strong validator

    # -- /log ---------------------------------------------------------------------
    def _log(self, ex: Exchange, grant: Grant, query: dict[str, str], post: bool) -> Answer:
        if post:
            with ex.read_body(self.max_log, "[sidecar] max_log") as body:
                text = bytes(body.data).decode("utf-8", "replace")
        else:
            text = query.get("log", "")
        text = text.rstrip("\r\n")
        if text:
            with self.grants.in_flight(grant):
                grant.log(text)
        return OK


_UNCONDITIONAL: Final = object()


def _precondition(headers: Mapping[str, str]) -> object:
    """``If-Match: "<version>"`` (exactly the ETag a GET gave) or ``If-None-Match: *``
    (must not exist) make a POST a compare-and-set: a race-free read-modify-write
    for isolates.  Returns the expected version, None for "must not exist", or
    ``_UNCONDITIONAL``."""
    match = headers.get("if-match")
    none_match = headers.get("if-none-match")
    if match is None and none_match is None:
        return _UNCONDITIONAL
    if match is not None and none_match is not None:
        raise Refused(400, "send either If-Match or If-None-Match, not both")
    if none_match is not None:
        if none_match != "*":
            raise Refused(400, 'If-None-Match on POST /var must be * ("create only if it does not exist")')
        return None
    assert match is not None
    text = match[1:-1] if len(match) >= 2 and match[0] == match[-1] == '"' else ""
    if not (text.isascii() and text.isdigit() and text == str(int(text)) and 0 < int(text) < 1 << 63):
        raise Refused(400, f'If-Match must be exactly the ETag a GET returned, quotes included, like "3"; got {match[:40]!r}')
    return int(text)


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of a request target (origin form the fast way, others through urlsplit)."""
    if target.startswith("/"):
        path, _, query = target.partition("#")[0].partition("?")
        return path, query
    parts = urlsplit(target)
    return parts.path, parts.query


def _query(text: str) -> dict[str, str]:
    """Query parameters; the first value of a repeated name wins, as in Go
    (what ``parse_qsl(keep_blank_values=True)`` gives, without its cost)."""
    out: dict[str, str] = {}
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        if name not in out:
            out[name] = value
    return out


def _header_safe(value: str) -> bytes:
    return value.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")
