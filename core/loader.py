"""Safe YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with marks; we construct plain Python values from
them ourselves so that (a) every mapping key and value gets a ``(line, col)``
recorded under its path, for ``FILE:LINE:COL`` diagnostics, and (b) alias
expansion is counted, so a "billion laughs" document is refused instead of
eating the machine.  Only JSON-compatible values come out (timestamps become
strings, sets and custom tags are refused).
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import Diagnostic
from .records import NEW, Record, typed_as_dataclass

try:  # libyaml is ~8x faster; fall back to the pure-Python loader when absent
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

Path = tuple[Any, ...]

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_NODES = 100_000
MAX_DEPTH = 200


@typed_as_dataclass()
class Document(Record):
    """A parsed YAML document plus the source position of each of its parts."""

    __slots__ = ("filename", "text", "value", "pos", "kpos", "styles", "has_templates")
    __match_args__ = ("filename", "text", "value", "pos", "kpos", "styles", "has_templates")
    _fresh = {"pos": dict, "kpos": dict, "styles": dict}
    filename: str
    text: str
    value: Any
    pos: dict[Path, tuple[int, int]]
    """path -> 0-based (line, col) of the value"""
    kpos: dict[Path, tuple[int, int]]
    """path -> position of the mapping key"""
    styles: dict[Path, str | None]
    """Scalar style of string values ('' plain, "'", '"', '|', '>')."""
    has_templates: bool
    """A string value contains "jq(" or "js("."""

    def __init__(self, filename: str, text: str, value: Any, pos: dict[Path, tuple[int, int]] = NEW,
                 kpos: dict[Path, tuple[int, int]] = NEW, styles: dict[Path, str | None] = NEW,
                 has_templates: bool = False) -> None:
        self.filename = filename
        self.text = text
        self.value = value
        self.pos = {} if pos is NEW else pos
        self.kpos = {} if kpos is NEW else kpos
        self.styles = {} if styles is NEW else styles
        self.has_templates = has_templates

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Best known 1-based position for ``path``: the node itself, else its nearest parent."""
        table = self.kpos if key else self.pos
        p = path
        while True:
            hit = table.get(p)
            if hit is None and key:
                hit = self.pos.get(p)
            if hit is not None:
                return hit[0] + 1, hit[1] + 1
            if not p:
                return 1, 1
            p = p[:-1]


class YamlError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(str(diagnostic))


_scalar_constructor = yaml.constructor.SafeConstructor()


def load_document(
    text: str | bytes,
    filename: str = "<string>",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> Document:
    """Parse one YAML document; raise ``YamlError`` with a located diagnostic."""
    if isinstance(text, bytes):
        if len(text) > max_bytes:
            raise _too_big(filename, len(text), max_bytes)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlError(Diagnostic(filename, 1, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    elif len(text) > max_bytes:
        raise _too_big(filename, len(text), max_bytes)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(Diagnostic(filename, line, col, f"YAML syntax error: {problem}")) from None
    except yaml.YAMLError as exc:
        raise YamlError(Diagnostic(filename, 1, 1, f"YAML error: {exc}")) from None
    doc = Document(filename=filename, text=text, value=None)
    if node is None:
        doc.value = None
        return doc
    builder = _Builder(doc, max_nodes)
    doc.value = builder.build(node, (), 0)
    return doc


def _too_big(filename: str, size: int, limit: int) -> YamlError:
    return YamlError(
        Diagnostic(
            filename, 1, 1,
            f"document is {size} bytes, over the {limit}-byte limit "
            "(raise [limits] max_yaml_bytes in isolde.toml)",
        )
    )


class _Builder:
    def __init__(self, doc: Document, max_nodes: int) -> None:
        self.doc = doc
        self.budget = max_nodes
        self.max_nodes = max_nodes

    def fail(self, node: yaml.Node, message: str) -> YamlError:
        m = node.start_mark
        return YamlError(Diagnostic(self.doc.filename, m.line + 1, m.column + 1, message))

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.fail(
                node,
                f"document expands to more than {self.max_nodes} nodes (aliases included); "
                "refusing it (raise [limits] max_yaml_nodes in isolde.toml)",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"document nests deeper than {MAX_DEPTH} levels")
        self.doc.pos[path] = (node.start_mark.line, node.start_mark.column)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            _scalar_constructor.flatten_mapping(node)  # resolves "<<" merge keys
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise self.fail(knode, "mapping keys must be plain strings")
                key = self.scalar(knode, None)
                if not isinstance(key, str):
                    key = "null" if key is None else str(key).lower() if isinstance(key, bool) else str(key)
                if key in out:
                    raise self.fail(knode, f"duplicate key '{key}'")
                self.doc.kpos[path + (key,)] = (knode.start_mark.line, knode.start_mark.column)
                out[key] = self.build(vnode, path + (key,), depth + 1)
            return out
        raise self.fail(node, "unsupported YAML node")  # pragma: no cover

    def scalar(self, node: yaml.ScalarNode, path: Path | None) -> Any:
        tag = node.tag
        if tag == "tag:yaml.org,2002:str":
            value = node.value
            if path is not None:
                self.doc.styles[path] = node.style or ""
                if not self.doc.has_templates and ("jq(" in value or "js(" in value):
                    self.doc.has_templates = True
            return value
        if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"):
            return node.value  # keep the text: instance data is JSON
        if tag == "tag:yaml.org,2002:bool" and node.value.lower() not in ("true", "false"):
            return node.value  # YAML 1.2, as Direktiv's yaml.v3: yes/no/on/off are strings
        try:
            value = _scalar_constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            raise self.fail(node, f"unsupported YAML tag {tag!r}") from None
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return node.value  # NaN/Infinity are not JSON
        return value
