"""How error messages name what they are about: the path of an item, a short repr, a type."""

from __future__ import annotations

import reprlib
import typing
from typing import Any

from .._errors import InvalidJobData

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def item_path(where: str, key: Any) -> str:
    """The path of an item, `where[key]` (an int too long to print is shown by its size)."""
    if type(key) is int and key.bit_length() > 10_000:
        return f"{where}[<a {key.bit_length()}-bit int>]"
    return f"{where}[{key!r}]"


def brief(value: Any) -> str:
    """A short repr of `value` (about 60 characters); never fails, even for huge or deep values."""
    try:
        return _REPR.repr(value)[:80]
    except Exception:  # a huge int (Python refuses to print it), or a failing __repr__
        return f"a {type(value).__name__}"


def type_name(tp: Any) -> str:
    if typing.get_args(tp):  # list[int], Literal['a'], int | None: their __name__ drops the arguments
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def bad(value: Any, tp: Any, where: str) -> InvalidJobData:
    return InvalidJobData(f"field {where!r} should be {type_name(tp)}, got {type(value).__name__} {brief(value)}")
