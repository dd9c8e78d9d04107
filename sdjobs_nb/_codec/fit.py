"""Will a saved value come back as itself? A value that does not fit its field's annotation ("a
misfit") is refused when it is saved, not found broken at resume."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pathlib
from typing import Any

from .._errors import InvalidJobData
from .coerce import coerce_value
from .describe import bad, brief, item_path, type_name
from .fields import SCALARS, Shape, field_plan, is_namedtuple_class, shape_for
from .limits import deeper
from .plain import rebuilt_problem, refuse_rebuilt

_PLAIN_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})


def misfit(value: Any, tp: Any, where: str, depth: int) -> None:
    """Raise InvalidJobData unless `value`, saved then loaded under annotation `tp`, comes back as itself.

    `where` is the field's path ('inner.x', 'items[3]'); `depth` counts the containers around `value`.
    """
    shape = shape_for(tp)
    if shape.kind == "untyped" or type(value) is shape.loose:
        return _misfit_untyped(value, where, depth)
    if shape.kind == "union":
        return _misfit_union(value, tp, where, depth)
    if shape.kind == "literal":
        return _coerce_stored(value, tp, where)
    if shape.kind == "container":
        return _misfit_container(value, shape, tp, where, depth)
    return _misfit_class(value, shape.origin, where, depth)


def _misfit_untyped(value: Any, where: str, depth: int) -> None:
    """With no annotation to go by, only plain data comes back as itself: refuse what needs one."""
    kind = type(value)
    if kind in SCALARS:
        return
    if kind not in _PLAIN_CONTAINERS:
        refuse_rebuilt(value, f"field {where!r}", InvalidJobData)
    if isinstance(value, dict):
        inner = deeper(depth)
        for key, item in value.items():
            if type(key) is not str:
                refuse_rebuilt(key, f"field {where!r} (a dict key)", InvalidJobData)
            if type(item) not in SCALARS:
                _misfit_untyped(item, item_path(where, key), inner)
    elif isinstance(value, (list, tuple, set, frozenset)):
        inner = deeper(depth)
        for i, item in enumerate(value):
            if type(item) not in SCALARS:
                _misfit_untyped(item, item_path(where, i), inner)


def _misfit_union(value: Any, tp: Any, where: str, depth: int) -> None:
    args = shape_for(tp).args
    if value is None and type(None) in args:
        return
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return misfit(value, arg, where, depth)
        except InvalidJobData as e:
            errors.append(e)
    raise errors[0] if len(errors) == 1 else bad(value, tp, where)


def _misfit_container(value: Any, shape: Shape, tp: Any, where: str, depth: int) -> None:
    origin, args = shape.origin, shape.args
    inner = deeper(depth)
    if origin is dict:
        if not isinstance(value, dict):
            raise bad(value, tp, where)
        key_type, item_type = args if len(args) == 2 else (Any, Any)
        _misfit_items(((key, key) for key in value), key_type, f"{where} (a dict key)", inner)
        return _misfit_items(value.items(), item_type, where, inner)
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise bad(value, tp, where)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise bad(value, tp, where)
        for i, (item, arg) in enumerate(zip(value, args)):
            if type(item) not in shape_for(arg).quick:
                misfit(item, arg, item_path(where, i), inner)
        return None
    return _misfit_items(enumerate(value), args[0] if args else Any, where, inner)


def _misfit_items(pairs: Any, tp: Any, where: str, depth: int) -> None:
    """Check each item of `(key, item)` pairs against the items' annotation `tp`."""
    quick = shape_for(tp).quick
    for key, item in pairs:
        if type(item) not in quick:
            misfit(item, tp, item_path(where, key), depth)


def _misfit_class(value: Any, tp: type, where: str, depth: int) -> None:
    if type(value) is tp and (dataclasses.is_dataclass(tp) or is_namedtuple_class(tp)):
        return _misfit_record(value, tp, where, depth)
    if not isinstance(value, enum.Enum) and rebuilt_problem(value) is not None:  # a record of another class
        raise InvalidJobData(
            f"field {where!r} should be {type_name(tp)}, got a {type(value).__qualname__}: only its fields are "
            f"saved, and loading builds the annotated class from them, so it would not come back as itself"
        )
    return _coerce_stored(value, tp, where)


def _misfit_record(value: Any, tp: type, where: str, depth: int) -> None:
    """Check the fields of a dataclass or NamedTuple against their own annotations."""
    inner = deeper(depth)
    for name, hint, shape in field_plan(tp):
        item = getattr(value, name)
        if type(item) not in shape.quick:
            misfit(item, hint, f"{where}.{name}", inner)


def _coerce_stored(value: Any, tp: Any, where: str) -> None:
    """Check that loading can turn what `value` is stored as back into a `tp`."""
    try:
        stored = _as_stored(value)
        coerce_value(stored, tp, where)
    except InvalidJobData:
        if stored is value:
            raise
        raise InvalidJobData(f"field {where!r} should be {type_name(tp)}, got {type(value).__name__} {brief(value)}, "
                             f"which would load back as {type(stored).__name__} {brief(stored)}") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidJobData(f"field {where!r}: {brief(value)} would not load back ({type(e).__name__}: {e})") from e


def _as_stored(value: Any) -> Any:
    """What loading gives back for `value`, before its annotation is applied: a subclass of a
    scalar, container, datetime or path comes back as its base type."""
    if isinstance(value, enum.Enum):
        return _as_stored(value.value)
    if type(value) in SCALARS or type(value) in _PLAIN_CONTAINERS:
        return value
    for base in (str, int, float, bytes, list, dict, tuple):  # a subclass comes back as its base
        if isinstance(value, base):
            return base(value)
    if isinstance(value, (set, frozenset)):
        return set(value)
    if isinstance(value, dt.datetime):
        return dt.datetime.fromisoformat(value.isoformat())
    if isinstance(value, dt.date):
        return dt.date.fromisoformat(value.isoformat())
    if isinstance(value, pathlib.PurePath):
        return pathlib.Path(str(value))
    return value
