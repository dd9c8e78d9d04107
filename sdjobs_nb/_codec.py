"""Job state <-> msgpack, as a map of field names; never positional, never pickle.

Self-describing values (datetime, Path, UUID, tuple, set) travel as msgpack ext types whose
payloads are plain data. Enums and nested dataclasses are rebuilt from the *annotation* of the
field that holds them, so decoding a blob never imports or runs code named inside it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import pathlib
import types
import typing
import uuid
from typing import Any

import msgpack

from ._errors import InvalidJobData, SerializationError, StateTooLarge

__all__ = ("encode_state", "decode_fields", "coerce_fields", "pack", "unpack", "DEFAULT_MAX_STATE_BYTES")

DEFAULT_MAX_STATE_BYTES = 16 * 1024 * 1024

_EXT_DATETIME = 1
_EXT_PATH = 2
_EXT_UUID = 3
_EXT_TUPLE = 4
_EXT_SET = 5
_EXT_DATE = 6

_SCALARS = (str, int, float, bool, bytes, type(None))


def _to_plain(value: Any, where: str) -> Any:
    """Turn a Python value into msgpack-ready data, or raise naming `where`."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        return {_key(k, where): _to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    return _to_plain_special(value, where)


def _to_plain_special(value: Any, where: str) -> Any:
    if isinstance(value, enum.Enum):
        return _to_plain(value.value, where)
    if isinstance(value, (str, int, float, bytes)):  # subclasses of scalars
        return value
    if isinstance(value, dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, pathlib.PurePath):
        return msgpack.ExtType(_EXT_PATH, str(value).encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    if isinstance(value, tuple):
        return msgpack.ExtType(_EXT_TUPLE, pack([_to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]))
    if isinstance(value, (set, frozenset)):
        items = [_to_plain(v, f"{where}{{}}") for v in value]
        return msgpack.ExtType(_EXT_SET, pack(items))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
    if isinstance(value, (list, dict)):
        return _to_plain(list(value) if isinstance(value, list) else dict(value), where)
    raise SerializationError(
        f"{where} holds a {type(value).__module__}.{type(value).__qualname__}, which cannot be "
        f"stored; keep only data in job state (numbers, strings, bytes, lists, dicts, dataclasses, "
        f"datetime, Path, UUID, Enum) and re-create resources like files or locks inside run()"
    )


def _key(key: Any, where: str) -> Any:
    if type(key) in (str, int):
        return key
    if isinstance(key, enum.Enum):
        return key.value
    raise SerializationError(f"{where} has a dict key {key!r} of type {type(key).__name__}; use str or int keys")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _EXT_PATH:
        return pathlib.Path(data.decode())
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == _EXT_TUPLE:
        return tuple(unpack(data))
    if code == _EXT_SET:
        return set(unpack(data))
    raise ValueError(f"unknown msgpack extension type {code}")


def pack(value: Any) -> bytes:
    """Pack plain data (already converted) with msgpack."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(blob: bytes) -> Any:
    """Unpack msgpack data written by `pack` or `encode_value`; never runs code."""
    return msgpack.unpackb(blob, raw=False, ext_hook=_ext_hook, strict_map_key=False)


def encode_value(value: Any, where: str = "value") -> bytes:
    """Encode any storable value (a result, a context) to msgpack bytes."""
    return pack(_to_plain(value, where))


def encode_state(job: Any, max_bytes: int = DEFAULT_MAX_STATE_BYTES) -> bytes:
    """Encode a job dataclass's fields as a msgpack map of field names."""
    cls = type(job)
    plain = {}
    for name in _field_names(cls):
        value = getattr(job, name)
        plain[name] = value if type(value) in _SCALARS else _to_plain(value, f"field {name!r} of {cls.__name__}")
    blob = pack(plain)
    if len(blob) > max_bytes:
        raise StateTooLarge(
            f"{cls.__name__} state is {len(blob):,} bytes, over the limit of {max_bytes:,}; keep large "
            f"data in files and store their paths, or raise max_state_bytes in JobManager.open"
        )
    return blob


_names_cache: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _names_cache.get(cls)
    if names is None:
        names = _names_cache[cls] = tuple(f.name for f in _fields(cls))
    return names


def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.init)


def decode_fields(blob: bytes) -> dict[str, Any]:
    """Decode a stored state blob to a dict of field values (before coercion)."""
    data = unpack(blob)
    if not isinstance(data, dict):
        raise ValueError(f"stored state is a {type(data).__name__}, not a map of field names")
    return data


# --- coercion of plain data onto a dataclass's annotations -------------------------------

_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _hints_cache.get(cls)
    if hints is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # unresolvable forward refs: check nothing rather than fail
            hints = {}
        _hints_cache[cls] = hints
    return hints


def coerce_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Check `data` against `cls`'s fields and annotations; return constructor kwargs.

    Raises `InvalidJobData` naming every missing, extra or ill-typed field.
    """
    if not isinstance(data, dict):
        raise InvalidJobData(f"data for {cls.__name__} must be a dict of field values, not {type(data).__name__}")
    fields = {f.name: f for f in _fields(cls)}
    problems = [f"unknown field {k!r}" for k in data if k not in fields]
    problems += [
        f"missing field {name!r}"
        for name, f in fields.items()
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            continue
        try:
            kwargs[name] = _coerce(value, hints.get(name, Any), name)
        except InvalidJobData as e:
            problems.append(str(e))
    if problems:
        raise InvalidJobData(f"bad data for job {cls.__name__}: " + "; ".join(problems) + f" (fields: {', '.join(fields)})")
    return kwargs


def check_instance(job: Any) -> None:
    """Raise `InvalidJobData` if a job's field values do not fit their annotations.

    Run at dispatch so a job that could not be re-created from its saved state (say a float
    in an `int` field) is refused before anything is written, not found broken at resume.
    """
    cls = type(job)
    hints = _hints(cls)
    problems = []
    for name in _field_names(cls):
        hint = hints.get(name, Any)
        if hint is Any:
            continue
        try:
            _coerce(getattr(job, name), hint, name)
        except InvalidJobData as e:
            problems.append(str(e))
    if problems:
        raise InvalidJobData(f"bad state for job {cls.__name__}: " + "; ".join(problems))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _bad(value: Any, tp: Any, where: str) -> InvalidJobData:
    return InvalidJobData(f"field {where!r} should be {_type_name(tp)}, got {type(value).__name__} {value!r:.60}")


def _coerce(value: Any, tp: Any, where: str) -> Any:  # noqa: C901 - one branch per type family
    if tp is Any or tp is typing.Any or isinstance(tp, typing.TypeVar):
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), tp, where)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise _bad(value, tp, where)
    if origin in (list, set, frozenset, tuple, dict) or tp in (list, set, frozenset, tuple, dict):
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
            return _coerce(value, arg, where)
        except InvalidJobData:
            continue
    raise _bad(value, tp, where)


def _coerce_container(value: Any, origin: Any, args: tuple, tp: Any, where: str) -> Any:
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(value, tp, where)
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}[{k!r}]") for k, v in value.items()}
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _bad(value, tp, where)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise _bad(value, tp, where)
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item_type = args[0] if args else Any
    items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return origin(items) if origin is not list else items


def _coerce_class(value: Any, tp: type, where: str) -> Any:
    if tp is float and type(value) is int:
        return float(value)
    if tp is int and type(value) is bool:
        raise _bad(value, tp, where)
    if isinstance(value, tp):
        return value
    if issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise InvalidJobData(f"field {where!r}: {value!r} is not a {tp.__name__} value") from None
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return tp(**coerce_fields(tp, value))
    if issubclass(tp, pathlib.PurePath) and isinstance(value, str):
        return tp(value)
    if tp is uuid.UUID and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise _bad(value, tp, where) from None
    if tp in (dt.datetime, dt.date) and isinstance(value, str):
        try:
            return tp.fromisoformat(value)
        except ValueError:
            raise _bad(value, tp, where) from None
    raise _bad(value, tp, where)


def is_finite_number(value: Any) -> bool:
    """Tell whether `value` is a real, finite int or float (bools excluded)."""
    return type(value) in (int, float) and not (type(value) is float and not math.isfinite(value))
