"""Value classes written out by hand instead of made by ``@dataclass``.

``dataclasses`` costs at every start: importing it loads ``inspect`` (and with it
``ast``, ``dis`` and ``tokenize``), and each class it makes generates and compiles
its methods' source (~0.5 ms a class on a cold start).  The value classes that the
shortest commands need (``isolde vars list``, ``isolde run``) are written out instead:
each class holds its ``__slots__``, its fields in order (``__match_args__``, as
``@dataclass`` sets it) and its ``__init__``; the base gives what ``@dataclass`` would
give by field:

* :class:`Frozen` (``@dataclass(frozen=True, slots=True)``): ``__repr__``, ``__eq__``
  and ``__hash__`` by field (a hot class may write its own), the refusal to assign or
  delete a field (``FrozenInstanceError``), pickling of the slots;
* :class:`Record` (``@dataclass(slots=True)``): ``__repr__``, ``__eq__`` by field, not
  hashable.  A class that compares by identity (``eq=False``) sets ``__eq__`` and
  ``__hash__`` back to ``object``'s.

To ``dataclasses`` they look like dataclasses when asked: ``fields``, ``replace``,
``asdict`` and ``is_dataclass`` work, and a ``@dataclass`` may subclass one (a
plugin's ``Put`` with extra fields).  The description is made on first use, from the
fields and the defaults of ``__init__`` (``NEW`` stands for a field's fresh default, made
by what the class's ``_fresh`` names: ``default_factory`` in a dataclass), so that nothing
is generated at import.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

__all__ = ["NEW", "Frozen", "Record", "typed_as_dataclass"]

if TYPE_CHECKING:
    _T = TypeVar("_T")

NEW: Any = type("_New", (), {"__repr__": lambda self: "NEW", "__slots__": ()})()
"""The default of a field whose value is made fresh per instance (a new list or dict):
``__init__`` tests ``value is NEW``, and the class's ``_fresh`` maps the field to what
makes the value (for ``dataclasses``: its ``default_factory``)."""

if TYPE_CHECKING:
    # The type checker is told the truth about the fields, the frozen instances and
    # what a subclass made with @dataclass inherits; at run time nothing is generated.
    from dataclasses import dataclass as typed_as_dataclass
else:
    def typed_as_dataclass(**options: Any) -> Callable[[_T], _T]:
        return lambda cls: cls


class _Described:
    """``__dataclass_fields__`` of a written-out class, described when first asked for
    (``dataclasses.fields``, ``replace``, ``asdict``, a ``@dataclass`` subclass); the
    bases themselves are no dataclass."""

    def __get__(self, obj: object, cls: type) -> Any:
        if "_value_base" in cls.__dict__:
            raise AttributeError("__dataclass_fields__")
        _describe_fields(cls)
        return cls.__dict__["__dataclass_fields__"]


class _ByField:
    """What both bases give by field: ``repr``, equality, the dataclass description."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()
    _value_base = True  # (in a base's own namespace only: the bases are no dataclass)
    if not TYPE_CHECKING:
        __dataclass_fields__ = _Described()

    def __repr__(self) -> str:
        hidden = getattr(self, "_no_repr", ())
        shown = ", ".join([f"{name}={getattr(self, name)!r}" for name in self.__match_args__ if name not in hidden])
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return _values(self) == _values(other)
        return NotImplemented


class Frozen(_ByField):
    """Base of a frozen value class with ``__slots__``; ``__match_args__`` names the
    fields in order (as ``@dataclass`` sets it)."""

    __slots__ = ()
    _value_base = True

    def __hash__(self) -> int:
        return hash(_values(self))

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self) -> list[object]:
        return [getattr(self, name) for name in self.__match_args__]

    def __setstate__(self, state: list[object]) -> None:
        for name, value in zip(self.__match_args__, state):
            object.__setattr__(self, name, value)


class Record(_ByField):
    """Base of a mutable value class with ``__slots__``; ``__match_args__`` names the
    fields in order."""

    __slots__ = ()
    _value_base = True
    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as a dataclass


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple([getattr(obj, name) for name in obj.__match_args__])


def _describe_fields(cls: Any) -> None:
    """Give a hand-written class the dataclass description of its fields (names, types,
    defaults from ``__init__``; a field named in ``_no_repr`` is left out of ``repr``),
    taken from a dataclass made alike."""
    import dataclasses

    defaults = cls.__init__.__defaults__ or ()
    names = cls.__match_args__
    first_default = len(names) - len(defaults)
    hidden = getattr(cls, "_no_repr", ())
    fresh = getattr(cls, "_fresh", {})
    spec = []
    for i, name in enumerate(names):
        default = defaults[i - first_default] if i >= first_default else dataclasses.MISSING
        if default is NEW:  # made per instance: the class's _fresh names what makes it
            if name not in fresh:
                raise TypeError(f"{cls.__qualname__}.{name} defaults to NEW: name what makes it in {cls.__qualname__}._fresh")
            described = dataclasses.field(default_factory=fresh[name], repr=name not in hidden)
        else:
            described = dataclasses.field(default=default, repr=name not in hidden)
        spec.append((name, cls.__annotations__.get(name, "object"), described))
    twin = dataclasses.make_dataclass(cls.__name__, spec, frozen=issubclass(cls, Frozen), eq=cls.__eq__ is not object.__eq__)
    type.__setattr__(cls, "__dataclass_fields__", twin.__dataclass_fields__)  # type: ignore[attr-defined]
    type.__setattr__(cls, "__dataclass_params__", twin.__dataclass_params__)  # type: ignore[attr-defined]
