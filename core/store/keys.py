"""Key rules and key encoding: which names are legal and how a variable's
address becomes one LMDB key.

A variable's key is ``namespace NUL scope-letter NUL owner NUL key`` (UTF-8),
the letter ``i`` (instance), ``w`` (workflow) or ``n`` (namespace), the owner
the instance id, the workflow id, or empty for namespace scope.  No name may
contain NUL, so the prefix ``namespace NUL`` (or ``namespace NUL w NUL workflow
NUL``) selects exactly one namespace (or workflow): ``foo`` never matches
``foobar``.  An instance registration's key is ``namespace NUL instance-id``.
"""

from __future__ import annotations

import re

from .types import InvalidKey, Ref, StoreError

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["SCOPES", "KEY_RE", "MAX_KEY_BYTES", "RESERVED_MARK", "check_key", "check_name", "check_ref", "check_scope", "in_reserved",
           "scope_owner", "KeyCodec"]

SCOPES: Final[tuple[str, str, str]] = ("instance", "workflow", "namespace")

# Direktiv's rule, verbatim, so error messages quote what the docs quote.  Note
# that ``$`` also matches before a trailing newline: use ``fullmatch`` (as
# ``check_key`` does) rather than ``match``.
KEY_RE: Final[re.Pattern[str]] = re.compile(
    r"^(([a-zA-Z][a-zA-Z0-9_\-\.]*[a-zA-Z0-9])|([a-zA-Z]))$"
)
MAX_KEY_BYTES: Final[int] = 255

LETTER: Final[dict[str, str]] = {"instance": "i", "workflow": "w", "namespace": "n"}


def check_key(key: str) -> None:
    """Raise InvalidKey, quoting the rule, so a workflow author can fix the key
    from the message alone."""
    if isinstance(key, str) and len(key) <= MAX_KEY_BYTES and KEY_RE.fullmatch(key):
        return
    if not isinstance(key, str):
        shown = f"of type {type(key).__name__}"
    else:
        shown = repr(key if len(key) <= 60 else key[:57] + "...")
    raise InvalidKey(
        f"invalid variable key {shown}: a key starts with a letter, ends with a letter "
        f"or digit, contains only ASCII letters, digits, '_', '-' and '.', and is at "
        f"most {MAX_KEY_BYTES} bytes (pattern {KEY_RE.pattern})"
    )


def check_scope(scope: str) -> None:
    """Raise StoreError listing the valid scopes, so the fix is in the message."""
    if scope not in LETTER:
        raise StoreError(f"invalid variable scope {scope!r}: must be one of {', '.join(SCOPES)}")


def check_name(value: str, what: str) -> None:
    """Names become key components separated by NUL; a NUL inside one would
    let one namespace or owner alias another, so it is refused."""
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise StoreError(f"{what} must not contain a NUL character: {value!r}")


def letter_owner(scope: str, owner: str) -> tuple[str, str]:
    """Resolve a scope to its key letter and the owner actually stored."""
    letter = LETTER.get(scope)
    if letter is None:
        check_scope(scope)
        raise AssertionError  # unreachable: check_scope raised
    if letter == "n":
        return "n", ""
    check_name(owner, f"owner of a {scope}-scope variable")
    return letter, owner


def scope_owner(namespace: str, scope: str, owner: str) -> str:
    """Check a scope address and return the owner a variable of it is stored under
    (``""`` for the namespace scope): the rule every store backend applies."""
    check_name(namespace, "namespace")
    return letter_owner(scope, owner)[1]


def check_ref(ref: Ref) -> tuple[str, str, str, str]:
    """Check a variable's whole address (namespace, scope, owner, key) and return it as
    stored: ``(namespace, scope, owner, key)``, the owner empty for the namespace scope."""
    owner = scope_owner(ref.namespace, ref.scope, ref.owner)
    check_key(ref.key)
    return ref.namespace, ref.scope, owner, ref.key


RESERVED_MARK: Final[bytes] = b"i\x00~isolde-"
"""What follows the namespace in the key of an instance-scope variable of a reserved owner
(``~isolde-history``, ``~isolde-timeline/ID``, ``~isolde-cancel``, ``~isolde-daemon``:
isolde's own records, not a workflow's variables)."""


def in_reserved(kb: bytes) -> bool:
    """Whether a key or scope prefix is one of isolde's own records, which the LMDB store
    keeps in a database of their own (``reserved``): a thousand instance records in the
    variables' B-tree make it three levels deep, and every commit of a variable then
    copies and writes a path three pages long instead of one page."""
    return kb.startswith(RESERVED_MARK, kb.find(b"\x00") + 1)


def key_name(kb: bytes) -> str:
    """The variable key part of an encoded key, for error messages."""
    return kb.rsplit(b"\x00", 1)[-1].decode(errors="replace")


# Keys already validated: a set lookup (the str hash is cached) is cheaper
# than the regex on the hot path.  Bounded so hostile key churn cannot grow it.
_good_keys: set[str] = set()
_GOOD_KEYS_MAX: Final[int] = 4096


class KeyCodec:
    """Builds keys for one store whose keys may have at most ``max_key`` bytes
    (LMDB's compile-time limit, 511 by default).  Every key and prefix is
    built here, so an address that is legal part by part but too long as a
    whole is refused the same way (InvalidKey) by every operation."""

    __slots__ = ("max_key",)

    def __init__(self, max_key: int) -> None:
        self.max_key = max_key

    def _too_long(self, kb: bytes, what: str) -> InvalidKey:
        return InvalidKey(
            f"{what} are too long together: namespace, scope owner and key take {len(kb)} bytes "
            f"in the variable store, which allows at most {self.max_key} (use a shorter "
            "namespace, workflow id or key)"
        )

    def var_key(self, ref: Ref) -> bytes:
        """Validate a Ref and encode its key; the one place the key layout is
        decided for single variables (the hot path: checks are inlined)."""
        ns = ref.namespace
        owner = ref.owner
        key = ref.key
        letter = LETTER.get(ref.scope)
        if letter is None:
            check_scope(ref.scope)
        if letter == "n":
            owner = ""
        elif not owner or "\x00" in owner:
            check_name(owner, f"owner of a {ref.scope}-scope variable")
        if not ns or "\x00" in ns:
            check_name(ns, "namespace")
        try:
            known = key in _good_keys
        except TypeError:  # unhashable, e.g. a list computed by jq
            known = False
        if not known:
            check_key(key)
            if len(_good_keys) >= _GOOD_KEYS_MAX:
                _good_keys.clear()
            _good_keys.add(key)
        kb = f"{ns}\x00{letter}\x00{owner}\x00{key}".encode()
        if len(kb) > self.max_key:
            raise self._too_long(kb, f"the namespace {ns[:40]!r}, owner and key {key!r}")
        return kb

    def scope_prefix(self, namespace: str, scope: str, owner: str) -> bytes:
        """The exact prefix of one scope owner's variables."""
        check_name(namespace, "namespace")
        letter, owner = letter_owner(scope, owner)
        kb = f"{namespace}\x00{letter}\x00{owner}\x00".encode()
        if len(kb) + 1 > self.max_key:  # not even a one-letter key would fit
            raise self._too_long(kb, f"the namespace {namespace[:40]!r} and {scope} owner")
        return kb

    def namespace_prefix(self, namespace: str) -> bytes:
        check_name(namespace, "namespace")
        kb = f"{namespace}\x00".encode()
        if len(kb) > self.max_key:
            raise self._too_long(kb, f"the namespace {namespace[:40]!r}")
        return kb

    def reg_key(self, namespace: str, instance_id: str) -> bytes:
        """An instance registration's key."""
        check_name(namespace, "namespace")
        check_name(instance_id, "instance id")
        kb = f"{namespace}\x00{instance_id}".encode()
        if len(kb) > self.max_key:
            raise self._too_long(kb, f"the namespace {namespace[:40]!r} and instance id")
        return kb

    def instance_prefix(self, namespace: str, instance_id: str) -> bytes:
        return self.scope_prefix(namespace, "instance", instance_id)
