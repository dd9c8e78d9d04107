"""What a save stores of a class and how it checks it: the type families, a dataclass's init fields,
the resolved annotations, and the shape of each annotation, worked out once and cached."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

SCALARS = (str, int, float, bool, bytes, type(None))
_SCALAR_TYPES = frozenset(SCALARS)
CONTAINERS = (list, set, frozenset, tuple, dict)
#: the types that fit an annotation naming a scalar type without a closer look
_QUICK_FITS = {int: frozenset({int}), float: frozenset({float, int}), str: frozenset({str}),
               bytes: frozenset({bytes}), bool: frozenset({bool}), type(None): frozenset({type(None)})}
_NOTHING: frozenset[type] = frozenset()

_hints_cache: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    hints = _hints_cache.get(cls)
    if hints is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # unresolvable forward refs: check nothing rather than fail
            hints = {}
        _hints_cache[cls] = hints
    return hints


_names_cache: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    names = _names_cache.get(cls)
    if names is None:
        names = _names_cache[cls] = tuple(f.name for f in init_fields(cls))
    return names


def init_fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init)


def is_namedtuple_class(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


class Shape(typing.NamedTuple):
    """How a save checks values against one annotation; worked out once per annotation."""

    kind: str  # "untyped" (Any, object, a TypeVar, what loading ignores), "union", "literal", "container", "class"
    origin: Any  # the container type or the class
    args: tuple
    quick: frozenset[type]  # the types whose values fit with nothing more to look at
    loose: type | None  # a container type whose items may be anything: the untyped check suffices


_UNTYPED = Shape("untyped", None, (), _SCALAR_TYPES, None)
_shapes: dict[Any, Shape] = {}


def shape_for(tp: Any) -> Shape:
    try:
        shape = _shapes.get(tp)
    except TypeError:  # an unhashable annotation (a Literal of a list, say): work it out each time
        return _shape_of(tp)
    if shape is None:
        shape = _shapes[tp] = _shape_of(tp)
    return shape


def _shape_of(tp: Any) -> Shape:
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return _UNTYPED
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return Shape("union", None, args, frozenset().union(*(shape_for(arg).quick for arg in args)), None)
    if origin is typing.Literal:
        return Shape("literal", None, args, _NOTHING, None)
    if origin in CONTAINERS or tp in CONTAINERS:
        origin = origin or tp
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        loose = not fixed and all(arg is Ellipsis or shape_for(arg).kind == "untyped" for arg in args)
        return Shape("container", origin, args, _NOTHING, origin if loose else None)
    if isinstance(tp, type):
        return Shape("class", tp, (), _QUICK_FITS.get(tp, _NOTHING), None)
    return _UNTYPED  # an annotation that loading does not act on


_plans: dict[type, tuple[tuple[str, Any, Shape], ...]] = {}


def field_plan(cls: type) -> tuple[tuple[str, Any, Shape], ...]:
    """Each stored field of a dataclass or NamedTuple: its name, its annotation and how to check a
    value against it. Cached per class: a save runs it at every checkpoint."""
    plan = _plans.get(cls)
    if plan is None:
        hints = type_hints(cls)
        names = cls._fields if is_namedtuple_class(cls) else field_names(cls)
        plan = _plans[cls] = tuple((name, hints.get(name, Any), shape_for(hints.get(name, Any))) for name in names)
    return plan
