"""The schema language: declarations parse into the types validation uses, and the cache is faithful."""

from __future__ import annotations

import pytest

from isolde import schema
from isolde.schema import MISSING, ListOf, Lit, MapOf, Named, SchemaError, Union, parse_declarations

TEXT = """
state demo "A demo." {
    items!: [entry]          "Entries."
    mode: "a" | "b" = "a"    "A mode."
    table: {any}
    ratio: number = 1.5
    flag: bool = false
    nothing: any = null
}
struct entry { key!: varkey  scope!: scope  as: name "doc" }
"""


def test_declarations_parse_into_types() -> None:
    demo, entry = parse_declarations(TEXT, "test")
    assert (demo.kind, demo.name, demo.doc) == ("state", "demo", "A demo.")
    f = demo.fields
    assert f["items"].type == ListOf(Named("entry")) and f["items"].required
    assert f["mode"].type == Union((Lit("a"), Lit("b"))) and f["mode"].default == "a"
    assert f["table"].type == MapOf(Named("any")) and f["table"].default is MISSING
    assert (f["ratio"].default, f["flag"].default, f["nothing"].default) == (1.5, False, None)
    assert entry.fields["as"].doc == "doc" and not entry.fields["as"].required


def test_disk_cache_round_trips_exactly() -> None:
    parsed = schema._parse_text(TEXT)
    assert schema._decls_from_json(schema._decls_to_json(parsed)) == parsed


def test_malformed_declaration_names_its_origin() -> None:
    with pytest.raises(SchemaError, match="plugin 'broken'.*line 1"):
        parse_declarations("state x { y: }", "plugin 'broken'")


def test_duplicate_field_is_refused() -> None:
    with pytest.raises(SchemaError, match="declared twice"):
        parse_declarations("struct s { a: any  a: string }", "t")
