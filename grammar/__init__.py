"""The .lark grammars of isolde, shipped as package data (``isolde.grammar``)."""
