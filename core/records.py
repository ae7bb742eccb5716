"""Frozen value classes written out by hand instead of made by ``@dataclass``.

``dataclasses`` costs at every start: importing it loads ``inspect`` (and with it
``ast``, ``dis`` and ``tokenize``), and each class it makes generates and compiles
its methods' source (~0.2-0.4 ms a class).  The few value classes that the shortest
commands need (``isolde vars list``, ``isolde run``) are written out instead, with the
methods ``@dataclass(frozen=True, slots=True)`` would give them: ``__init__``,
``__repr__``, ``__eq__`` and ``__hash__`` by field (in each class), and from
:class:`Frozen` the refusal to assign or delete a field (``FrozenInstanceError``) and
pickling of the slots.  A ``@dataclass`` may still subclass one (a plugin's ``Put``
with extra fields): the first subclass gives the class the ``__dataclass_fields__``
that ``dataclasses`` looks for in the bases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

__all__ = ["Frozen", "typed_as_dataclass"]

_T = TypeVar("_T")

if TYPE_CHECKING:
    # The type checker is told the truth about the fields, the frozen instances and
    # what a subclass made with @dataclass inherits; at run time nothing is generated.
    from dataclasses import dataclass as typed_as_dataclass
else:
    def typed_as_dataclass(**options: Any) -> Callable[[_T], _T]:
        return lambda cls: cls


class Frozen:
    """Base of a frozen value class with ``__slots__``; ``__match_args__`` names the
    fields in order (as ``@dataclass`` sets it)."""

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__mro__[1:]:
            if base is not Frozen and issubclass(base, Frozen) and "__dataclass_fields__" not in base.__dict__:
                _describe_fields(base)

    def __getstate__(self) -> list[object]:
        return [getattr(self, name) for name in self.__match_args__]

    def __setstate__(self, state: list[object]) -> None:
        for name, value in zip(self.__match_args__, state):
            object.__setattr__(self, name, value)


def _describe_fields(cls: type[Frozen]) -> None:
    """Give a hand-written class the dataclass description of its fields (names, types,
    defaults from ``__init__``; a field named in ``_no_repr`` is left out of ``repr``),
    taken from a dataclass made alike."""
    import dataclasses

    defaults = cls.__init__.__defaults__ or ()
    names = cls.__match_args__
    first_default = len(names) - len(defaults)
    hidden = getattr(cls, "_no_repr", ())
    spec = []
    for i, name in enumerate(names):
        default = defaults[i - first_default] if i >= first_default else dataclasses.MISSING
        spec.append((name, cls.__annotations__.get(name, "object"),
                     dataclasses.field(default=default, repr=name not in hidden)))
    twin = dataclasses.make_dataclass(cls.__name__, spec, frozen=True)
    type.__setattr__(cls, "__dataclass_fields__", twin.__dataclass_fields__)  # type: ignore[attr-defined]
    type.__setattr__(cls, "__dataclass_params__", twin.__dataclass_params__)  # type: ignore[attr-defined]
