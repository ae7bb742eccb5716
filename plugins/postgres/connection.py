"""Connecting to PostgreSQL the way every part of the plugin does: isolde's
connection settings, one-line errors, and URLs without their passwords."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from isolde.plugin import StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["APPLICATION_NAME", "KEEPALIVES", "connect", "connect_args", "first_line", "pg_errors", "redact"]

APPLICATION_NAME = "isolde"
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}
"""Client-side TCP keepalives: a dead server or network is noticed within about 25 s."""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def first_line(exc: BaseException) -> str:
    """The first line of a driver error (its detail lines and context are left out)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect_args(url: str) -> dict[str, str]:
    """Connection settings isolde adds to ``url`` (those the URL sets itself win):
    its application name (``isolde``), a connect timeout and TCP keepalives."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError: connect() reports it in full
        given = {}
    extra = {"application_name": APPLICATION_NAME, "connect_timeout": "10", **KEEPALIVES}
    return {k: v for k, v in extra.items() if k not in given}


def connect(url: str, session: str = "") -> psycopg.Connection[Any]:
    """A new autocommit connection with isolde's settings, ``session`` (SET
    statements) run on it; a one-line ``StoreError`` without the password when it fails."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    where = redact(url)
    try:
        conn = psycopg.connect(make_conninfo(url, **connect_args(url)), autocommit=True)
    except psycopg.Error as exc:
        raise StoreError(f"[store] url {where}: cannot connect to PostgreSQL: {first_line(exc)}") from None
    if session:
        try:
            conn.execute(session)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"[store] url {where}: cannot set up a session: {first_line(exc)}") from None
    return conn


@contextmanager
def pg_errors(where: str) -> Iterator[None]:
    """Driver errors inside become one-line StoreErrors naming ``where``."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL ({where}): {first_line(exc)}") from None
