"""Python value -> plain data for msgpack, within the depth limit; refusing what cannot be stored, or
what only an annotation naming its class would bring back as itself."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import msgpack

from .._errors import SerializationError
from .describe import brief, item_path
from .ext import EXT_SET, EXT_TUPLE, leaf_to_ext
from .fields import SCALARS, field_names
from .limits import TooDeep, deeper, too_deep
from .wire import pack


def _to_plain(value: Any, where: str, depth: int = 0, untyped: bool = False) -> Any:
    """Turn a Python value into msgpack-ready data, or raise naming `where`.

    `depth` counts the containers around `value`. With `untyped` (no annotation names what is
    inside), a dataclass, Enum or NamedTuple is refused: it could not come back as itself.
    """
    kind = type(value)
    if kind in SCALARS:
        return value
    if kind is list:
        inner = deeper(depth)
        return [v if type(v) in SCALARS else _to_plain(v, item_path(where, i), inner, untyped)
                for i, v in enumerate(value)]
    if kind is dict:
        inner = deeper(depth)
        return {(k if type(k) is str else _key(k, where, untyped)):
                (v if type(v) in SCALARS else _to_plain(v, item_path(where, k), inner, untyped))
                for k, v in value.items()}
    return _to_plain_special(value, where, depth, untyped)


def _to_plain_special(value: Any, where: str, depth: int, untyped: bool) -> Any:
    if untyped:
        refuse_rebuilt(value, where, SerializationError)
    if isinstance(value, enum.Enum):
        return _to_plain(value.value, where, depth, untyped)
    if isinstance(value, (str, int, float, bytes)):  # subclasses of scalars
        return value
    ext = leaf_to_ext(value)
    if ext is not None:
        return ext
    if isinstance(value, tuple):
        inner = deeper(depth)
        return msgpack.ExtType(EXT_TUPLE, pack([v if type(v) in SCALARS else _to_plain(v, item_path(where, i), inner, untyped)
                                                for i, v in enumerate(value)]))
    if isinstance(value, (set, frozenset)):
        inner = deeper(depth)
        return msgpack.ExtType(EXT_SET, pack([v if type(v) in SCALARS else _to_plain(v, f"{where}{{}}", inner, untyped)
                                              for v in value]))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        inner = deeper(depth)  # init fields only, as for a job: the others are the class's to compute
        return {name: _to_plain(getattr(value, name), f"{where}.{name}", inner) for name in field_names(type(value))}
    if isinstance(value, (list, dict)):
        return _to_plain(list(value) if isinstance(value, list) else dict(value), where, depth, untyped)
    raise SerializationError(
        f"{where} holds a {type(value).__module__}.{type(value).__qualname__}, which cannot be "
        f"stored; keep only data in job state (numbers, strings, bytes, lists, dicts, dataclasses, "
        f"datetime, Path, UUID, Enum) and re-create resources like files or locks inside run()"
    )


def _key(key: Any, where: str, untyped: bool) -> Any:
    if type(key) in (str, int):
        return key
    if isinstance(key, enum.Enum):
        if untyped:
            refuse_rebuilt(key, f"{where} (a dict key)", SerializationError)
        return key.value
    raise SerializationError(f"{where} has a dict key {brief(key)} of type {type(key).__name__}; use str or int keys")


def rebuilt_problem(value: Any) -> str | None:
    """Why `value` would not come back as itself unless an annotation names its class, or None."""
    if isinstance(value, enum.Enum):
        return "an Enum member, which would come back as its plain value"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return "a dataclass, which would come back as a plain dict"
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return "a NamedTuple, which would come back as a plain tuple"
    return None


def refuse_rebuilt(value: Any, where: str, error: type[Exception]) -> None:
    problem = rebuilt_problem(value)
    if problem is not None:
        name = type(value).__qualname__
        raise error(
            f"{where} holds {brief(value)}, {problem}: only an annotation naming {name} brings it back. "
            f"Annotate the field (or the items of the list, set or dict that holds it) with {name}, "
            f"a class defined at module level so that the annotation resolves, or store plain data"
        )


def plain_or_refuse(value: Any, where: str, untyped: bool) -> Any:
    """`_to_plain`, raising only SerializationError: what msgpack or Python refuse names `where` too."""
    try:
        return _to_plain(value, where, 0, untyped)
    except SerializationError:
        raise
    except TooDeep:
        raise too_deep(where) from None
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise SerializationError(f"{where} cannot be stored ({type(e).__name__}: {e})") from e
