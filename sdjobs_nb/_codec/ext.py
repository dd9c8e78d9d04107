"""The msgpack ext types: their codes, and the single values they carry (datetime, date, Path,
UUID, ints beyond 64 bits) both ways. Tuples and sets are ext types too; `nested` decodes them."""

from __future__ import annotations

import datetime as dt
import pathlib
import uuid
from typing import Any

import msgpack

_EXT_DATETIME = 1
_EXT_PATH = 2
_EXT_UUID = 3
EXT_TUPLE = 4
EXT_SET = 5
_EXT_DATE = 6
_EXT_BIGINT = 7  # an int outside int64/uint64: its two's complement bytes, big-endian


def leaf_to_ext(value: Any) -> msgpack.ExtType | None:
    if isinstance(value, dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, pathlib.PurePath):  # a name from os.listdir may hold lone surrogates
        return msgpack.ExtType(_EXT_PATH, str(value).encode("utf-8", "surrogatepass"))
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    return None


def pack_big_int(value: Any) -> msgpack.ExtType:
    """msgpack's `default`, which it calls for an int outside int64/uint64 (and for unknown types)."""
    if isinstance(value, int):
        return msgpack.ExtType(_EXT_BIGINT, int(value).to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
    raise TypeError(f"cannot pack a {type(value).__name__}")


def leaf_from_ext(code: int, data: bytes) -> Any:
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _EXT_PATH:
        return pathlib.Path(data.decode("utf-8", "surrogatepass"))
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    raise ValueError(f"unknown msgpack extension type {code}")
