"""The schema language: declarations of state types, function types and helper structs.

Declarations are text in the language defined by ``grammar/schema.lark``.  Plugins
hand them to the core through ``isolde_state_types`` (and friends); the core turns
them into the small dataclasses below, and the validator (``validate.py``), the
language reference and the JSON Schema generator all read those.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import zlib
from typing import Any

from .entrypoints import cache_dir
from .errors import IsoldeError
from .records import NEW, Frozen, Record, typed_as_dataclass


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@typed_as_dataclass(frozen=True)
class Named(Frozen):
    __slots__ = ("name",)
    __match_args__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)


class _Of(Frozen):
    """A type made of one other (the item of a list or of a map)."""

    __slots__ = ("item",)
    __match_args__ = ("item",)
    item: "Type"

    def __init__(self, item: "Type") -> None:
        object.__setattr__(self, "item", item)


@typed_as_dataclass(frozen=True)
class ListOf(_Of):
    __slots__ = ()


@typed_as_dataclass(frozen=True)
class MapOf(_Of):
    __slots__ = ()


@typed_as_dataclass(frozen=True)
class Lit(Frozen):
    __slots__ = ("value",)
    __match_args__ = ("value",)
    value: Any

    def __init__(self, value: Any) -> None:
        object.__setattr__(self, "value", value)


@typed_as_dataclass(frozen=True)
class Union(Frozen):
    __slots__ = ("alts",)
    __match_args__ = ("alts",)
    alts: tuple["Type", ...]

    def __init__(self, alts: tuple["Type", ...]) -> None:
        object.__setattr__(self, "alts", alts)


Type = Named | ListOf | MapOf | Lit | Union


@typed_as_dataclass(frozen=True)
class Field(Frozen):
    __slots__ = ("name", "type", "required", "default", "doc")
    __match_args__ = ("name", "type", "required", "default", "doc")
    name: str
    type: Type
    required: bool
    default: Any
    doc: str

    def __init__(self, name: str, type: Type, required: bool = False, default: Any = MISSING, doc: str = "") -> None:
        _set = object.__setattr__
        _set(self, "name", name)
        _set(self, "type", type)
        _set(self, "required", required)
        _set(self, "default", default)
        _set(self, "doc", doc)


@typed_as_dataclass()
class Decl(Record):
    """One ``state`` / ``function`` / ``struct`` declaration."""

    __slots__ = ("kind", "name", "fields", "doc", "origin")
    __match_args__ = ("kind", "name", "fields", "doc", "origin")
    kind: str
    name: str
    fields: dict[str, Field]
    doc: str
    origin: str
    """Which plugin declared it, for error messages and `isolde plugins`."""

    def __init__(self, kind: str, name: str, fields: dict[str, Field], doc: str = "", origin: str = "") -> None:
        self.kind = kind
        self.name = name
        self.fields = fields
        self.doc = doc
        self.origin = origin


class SchemaError(IsoldeError):
    """A plugin's declarations are malformed (a bug in the plugin, reported with its origin).

    An ``IsoldeError`` so the CLI prints it as one line naming the plugin, not a traceback.
    """


def type_str(t: Type) -> str:
    """Render a type the way it is written in the schema language (used in messages and docs)."""
    if isinstance(t, Named):
        return t.name
    if isinstance(t, ListOf):
        return f"[{type_str(t.item)}]"
    if isinstance(t, MapOf):
        return f"{{{type_str(t.item)}}}"
    if isinstance(t, Lit):
        return _json_str(t.value)
    return " | ".join(type_str(a) for a in t.alts)


def _json_str(v: Any) -> str:
    return json.dumps(v)


@functools.lru_cache(maxsize=1)
def _grammar() -> str:
    import importlib

    try:  # the file beside the package: importlib.resources is for zipped installs
        folder = importlib.import_module("isolde.grammar").__path__[0]
        with open(os.path.join(folder, "schema.lark"), encoding="utf-8") as fh:
            return fh.read()
    except (OSError, IndexError, AttributeError):
        from importlib import resources

        return resources.files("isolde.grammar").joinpath("schema.lark").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    """The lark parser for the schema language (immutable, so one per process is fine)."""
    from lark import Lark

    grammar = _grammar()
    folder = _cache_dir()
    cache: Any = False
    if folder is not None:
        cache = os.path.join(folder, f"schema-{_digest(grammar)}.lark.cache")
    return Lark(grammar, parser="lalr", propagate_positions=True, cache=cache)


def _digest(grammar: str) -> str:
    """The grammar's part of a cache file's name: its CRC-32 and length (no ``hashlib``,
    which loads OpenSSL, on every start)."""
    data = grammar.encode()
    return f"{zlib.crc32(data):08x}{len(data):x}"


def _cache_dir() -> str | None:
    """The user's cache directory for isolde (made if missing): the entry points' one
    (``$XDG_CACHE_HOME/isolde``, else ``~/.cache/isolde``); looked up once per process
    and environment, not once per declaration text (an engine start parses about twenty)."""
    return _cache_dir_for(os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=4)
def _cache_dir_for(xdg: str | None, home: str | None) -> str | None:
    path = cache_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return str(path)


ParsedDecls = tuple[tuple[str, str, str, tuple[Field, ...]], ...]


class _DeclCache:
    """Parsed declarations by their text, kept in one JSON file per grammar in the cache
    directory and read once per process: every engine start parses the same twenty-odd
    texts, and reading them back keeps lark (and building its parser) off the start-up
    path of the CLI entirely."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.raw: dict[str, Any] = {}
        self.lock = threading.Lock()
        folder = _cache_dir()
        if folder is None:
            return
        self.path = os.path.join(folder, f"decls-{_digest(_grammar())}.json")
        try:
            with open(self.path, encoding="utf-8") as fh:
                raw = json.load(fh)
            if isinstance(raw, dict):
                self.raw = raw
        except (OSError, ValueError):
            pass

    def get(self, text: str) -> ParsedDecls:
        raw = self.raw.get(text)
        if raw is not None:
            try:
                return _decls_from_json(raw)
            except (ValueError, KeyError, TypeError):
                pass
        parsed = _parse_text(text)
        if self.path is not None:
            with self.lock:
                self.raw = {**self.raw, text: _decls_to_json(parsed)}
                self._store(self.path, self.raw)
        return parsed

    @staticmethod
    def _store(path: str, raw: dict[str, Any]) -> None:
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(raw, fh)
            os.replace(tmp, path)
        except (OSError, TypeError, ValueError):
            try:
                os.unlink(tmp)
            except OSError:
                pass


@functools.lru_cache(maxsize=1)
def _decl_cache() -> _DeclCache:
    return _DeclCache()


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str) -> ParsedDecls:
    """Parse declarations, through the on-disk cache keyed by the grammar and the text."""
    return _decl_cache().get(text)


def _type_to_json(t: Type) -> Any:
    if isinstance(t, Named):
        return ["n", t.name]
    if isinstance(t, ListOf):
        return ["l", _type_to_json(t.item)]
    if isinstance(t, MapOf):
        return ["m", _type_to_json(t.item)]
    if isinstance(t, Lit):
        return ["v", t.value]
    return ["u", [_type_to_json(a) for a in t.alts]]


def _type_from_json(j: Any) -> Type:
    tag, arg = j
    if tag == "n":
        return Named(arg)
    if tag == "l":
        return ListOf(_type_from_json(arg))
    if tag == "m":
        return MapOf(_type_from_json(arg))
    if tag == "v":
        return Lit(arg)
    if tag == "u":
        return Union(tuple(_type_from_json(a) for a in arg))
    raise ValueError(tag)


def _decls_to_json(parsed: ParsedDecls) -> Any:
    return [
        [kind, name, doc, [[f.name, _type_to_json(f.type), f.required, f.default is not MISSING,
                            None if f.default is MISSING else f.default, f.doc] for f in fields]]
        for kind, name, doc, fields in parsed
    ]


def _decls_from_json(j: Any) -> ParsedDecls:
    return tuple(
        (kind, name, doc, tuple(
            Field(fname, _type_from_json(ftype), bool(req), default if has_default else MISSING, fdoc)
            for fname, ftype, req, has_default, default, fdoc in fields
        ))
        for kind, name, doc, fields in j
    )


def _parse_text(text: str) -> ParsedDecls:
    from lark import Token, Tree
    from lark.exceptions import LarkError, UnexpectedInput

    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise SchemaError(f"line {exc.line}, column {exc.column}: {exc.__class__.__name__}\n{exc.get_context(text)}") from None
    except LarkError as exc:
        raise SchemaError(str(exc)) from None

    def unquote(tok: Token) -> str:
        return str(json.loads(str(tok)))

    def to_type(node: Tree[Token] | Token) -> Type:
        assert isinstance(node, Tree)
        if node.data == "union":
            alts = tuple(to_type(c) for c in node.children)
            return alts[0] if len(alts) == 1 else Union(alts)
        if node.data == "list":
            return ListOf(to_type(node.children[0]))
        if node.data == "map":
            return MapOf(to_type(node.children[0]))
        if node.data == "named":
            return Named(str(node.children[0]))
        if node.data == "literal_type":
            return Lit(unquote(node.children[0]))  # type: ignore[arg-type]
        raise SchemaError(f"unknown type node {node.data}")  # pragma: no cover

    def to_literal(node: Tree[Token]) -> Any:
        kind = node.data
        if kind == "string":
            return unquote(node.children[0])  # type: ignore[arg-type]
        if kind == "number":
            return json.loads(str(node.children[0]))
        return {"true": True, "false": False, "null": None}[str(kind)]

    decls = []
    for decl in tree.children:
        kind, name, *rest = decl.children
        doc = ""
        fields: list[Field] = []
        for part in rest:
            if part.data == "doc":
                doc = unquote(part.children[0])
                continue
            fname, *fparts = part.children
            required = False
            ftype: Type | None = None
            default: Any = MISSING
            fdoc = ""
            for fp in fparts:
                if isinstance(fp, Token) and fp.type == "REQUIRED":
                    required = True
                elif fp.data == "default":
                    default = to_literal(fp.children[0])
                elif fp.data == "doc":
                    fdoc = unquote(fp.children[0])
                else:
                    ftype = to_type(fp)
            assert ftype is not None
            fields.append(Field(str(fname), ftype, required, default, fdoc))
        decls.append((str(kind), str(name), doc, tuple(fields)))
    return tuple(decls)


def parse_declarations(text: str, origin: str = "") -> list[Decl]:
    """Parse declarations written in the schema language."""
    try:
        parsed = _parse_cached(text)
    except SchemaError as exc:
        raise SchemaError(f"{origin or '<declarations>'}: {exc}") from None
    out = []
    for kind, name, doc, fields in parsed:
        table: dict[str, Field] = {}
        for f in fields:
            if f.name in table:
                raise SchemaError(f"{origin}: {kind} {name}: field '{f.name}' declared twice")
            table[f.name] = f
        out.append(Decl(kind, name, table, doc, origin))
    return out


@typed_as_dataclass()
class Schema(Record):
    """Every declaration known to one engine, by kind and name."""

    __slots__ = ("structs", "states", "functions")
    __match_args__ = ("structs", "states", "functions")
    _fresh = {"structs": dict, "states": dict, "functions": dict}
    structs: dict[str, Decl]
    states: dict[str, Decl]
    functions: dict[str, Decl]

    def __init__(self, structs: dict[str, Decl] = NEW, states: dict[str, Decl] = NEW,
                 functions: dict[str, Decl] = NEW) -> None:
        self.structs = {} if structs is NEW else structs
        self.states = {} if states is NEW else states
        self.functions = {} if functions is NEW else functions

    def add(self, decls: list[Decl]) -> None:
        for d in decls:
            table = {"struct": self.structs, "state": self.states, "function": self.functions}[d.kind]
            prev = table.get(d.name)
            if prev is not None and prev.origin != d.origin:
                raise SchemaError(f"{d.kind} '{d.name}' is declared by both {prev.origin} and {d.origin}")
            table[d.name] = d

    def check(self, builtin_types: set[str]) -> None:
        """Every named type must be a builtin or a declared struct (a plugin typo fails loudly)."""
        for table in (self.structs, self.states, self.functions):
            for d in table.values():
                for f in d.fields.values():
                    for n in _names(f.type):
                        if n not in builtin_types and n not in self.structs:
                            raise SchemaError(
                                f"{d.origin}: {d.kind} {d.name}: field '{f.name}' uses unknown type '{n}'"
                            )


def _names(t: Type) -> list[str]:
    if isinstance(t, Named):
        return [t.name]
    if isinstance(t, (ListOf, MapOf)):
        return _names(t.item)
    if isinstance(t, Union):
        return [n for a in t.alts for n in _names(a)]
    return []
