"""Plain data (decoded, or given to build a job) -> the values a dataclass's annotations name:
Enums, nested dataclasses, NamedTuples, paths, UUIDs, dates; naming every field that does not fit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pathlib
import types
import typing
import uuid
from typing import Any

from .._errors import InvalidJobData
from .describe import bad, brief, item_path
from .fields import CONTAINERS, init_fields, is_namedtuple_class, type_hints


def coerce_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Check `data` against `cls`'s fields and annotations; return constructor kwargs.

    Raises `InvalidJobData` naming every missing, extra or ill-typed field.
    """
    if not isinstance(data, dict):
        raise InvalidJobData(f"data for {cls.__name__} must be a dict of field values, not {type(data).__name__}")
    fields = {f.name: f for f in init_fields(cls)}
    problems = [f"unknown field {k!r}" for k in data if k not in fields]
    problems += [
        f"missing field {name!r}"
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    hints = type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            continue
        try:
            kwargs[name] = coerce_value(value, hints.get(name, Any), name)
        except InvalidJobData as e:
            problems.append(str(e))
        except (TypeError, ValueError, RecursionError) as e:  # a nested class refused it, or it is absurdly deep
            problems.append(f"field {name!r} could not be rebuilt ({type(e).__name__}: {e})")
    if problems:
        raise InvalidJobData(f"bad data for job {cls.__name__}: " + "; ".join(problems) + f" (fields: {', '.join(fields)})")
    return kwargs


def coerce_value(value: Any, tp: Any, where: str) -> Any:  # noqa: C901 - one branch per type family
    if tp is Any or tp is typing.Any or isinstance(tp, typing.TypeVar):
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), tp, where)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise bad(value, tp, where)
    if origin in CONTAINERS or tp in CONTAINERS:
        return _coerce_container(value, origin or tp, typing.get_args(tp), tp, where)
    if isinstance(tp, type):
        return _coerce_class(value, tp, where)
    return value  # an annotation we do not understand: accept, as dataclasses do


def _coerce_union(value: Any, args: tuple, tp: Any, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce_value(value, arg, where)
        except InvalidJobData:
            continue
    raise bad(value, tp, where)


def _coerce_container(value: Any, origin: Any, args: tuple, tp: Any, where: str) -> Any:
    if origin is dict:
        if not isinstance(value, dict):
            raise bad(value, tp, where)
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {coerce_value(k, kt, where): coerce_value(v, vt, item_path(where, k)) for k, v in value.items()}
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise bad(value, tp, where)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise bad(value, tp, where)
        return tuple(coerce_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item_type = args[0] if args else Any
    items = [coerce_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return origin(items) if origin is not list else items


def _coerce_class(value: Any, tp: type, where: str) -> Any:  # noqa: C901 - one branch per type family
    if tp is float and type(value) is int:
        return float(value)
    if tp is int and type(value) is bool:
        raise bad(value, tp, where)
    if isinstance(value, tp):
        return value
    if issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise InvalidJobData(f"field {where!r}: {brief(value)} is not a {tp.__name__} value") from None
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return tp(**coerce_fields(tp, value))
    if is_namedtuple_class(tp) and isinstance(value, (list, tuple)):
        return _coerce_namedtuple(value, tp, where)
    if issubclass(tp, pathlib.PurePath) and isinstance(value, str):
        return tp(value)
    if tp is uuid.UUID and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise bad(value, tp, where) from None
    if tp in (dt.datetime, dt.date) and isinstance(value, str):
        try:
            return tp.fromisoformat(value)
        except ValueError:
            raise bad(value, tp, where) from None
    raise bad(value, tp, where)


def _coerce_namedtuple(value: list[Any] | tuple[Any, ...], tp: type, where: str) -> Any:
    """Rebuild a NamedTuple from its items (stored as a plain tuple), each onto its own annotation."""
    hints, names = type_hints(tp), tp._fields
    if len(value) > len(names):
        raise bad(value, tp, where)
    items = [coerce_value(v, hints.get(name, Any), f"{where}.{name}") for name, v in zip(names, value)]
    try:
        return tp(*items)
    except TypeError:  # fewer items than the fields without a default
        raise bad(value, tp, where) from None
