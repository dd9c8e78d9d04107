"""Decoding tuples and sets (msgpack ext types holding a packed array), nested ones included, in a
loop rather than by recursion: at most `MAX_DECODE_DEPTH` deep, whatever the blob."""

from __future__ import annotations

import functools
from typing import Any

import msgpack

from .ext import EXT_SET, EXT_TUPLE, leaf_from_ext
from .limits import MAX_DECODE_DEPTH


def ext_hook(code: int, data: bytes) -> Any:
    """Decode an ext value met at the top level of a blob (a tuple or set with all it holds)."""
    if code == EXT_TUPLE or code == EXT_SET:
        try:  # most tuples and sets hold none: build them at once
            return _build(code, _unpack_items(data, _flat_ext_hook), frozen=False)
        except _NestedInside:
            return _unpack_nested(_Packed(code, data))
    return leaf_from_ext(code, data)


class _NestedInside(Exception):
    """Raised by `_flat_ext_hook` at a tuple or set inside a tuple or set: `_unpack_nested` takes over."""


def _flat_ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_TUPLE or code == EXT_SET:
        raise _NestedInside
    return leaf_from_ext(code, data)


def _defer(inner: list[_Packed], frozen: bool, code: int, data: bytes) -> Any:
    """The ext hook inside a tuple or set: a tuple or set in it is left packed, for the next level
    (unpacking it here would nest msgpack calls, 40 KiB of stack each)."""
    if code == EXT_TUPLE or code == EXT_SET:
        nested = _Packed(code, data, frozen)
        inner.append(nested)
        return nested
    return leaf_from_ext(code, data)


def _build(code: int, items: list[Any], frozen: bool) -> Any:
    if code == EXT_TUPLE:
        return tuple(items)
    return frozenset(items) if frozen else set(items)


def _unpack_items(data: bytes, ext_hook: Any) -> list[Any]:
    """The items of a tuple or set: its payload, which must be a msgpack array."""
    items = msgpack.unpackb(data, raw=False, ext_hook=ext_hook, strict_map_key=False, unicode_errors="surrogatepass")
    if type(items) is not list:
        raise ValueError(f"a tuple or set holds a {type(items).__name__}, not an array; the blob is corrupt")
    return items


class _Packed:
    """A tuple or set whose payload `_unpack_nested` unpacks in a loop, level by level, not by recursion.

    A set inside a set, or inside a tuple inside one, comes back as a frozenset (it was one: a
    set cannot hold a set); elsewhere a set comes back as a set, frozenset or not.
    """

    __slots__ = ("code", "data", "frozen", "items", "inner", "value")
    __hash__ = None  # type: ignore[assignment]  # never a dict key: a blob putting one there is refused

    def __init__(self, code: int, data: bytes, frozen: bool = False) -> None:
        self.code, self.data, self.frozen = code, data, frozen
        self.items: list[Any] = []
        self.inner: list[_Packed] = []  # the tuples and sets met in `data`, still packed
        self.value: Any = None

    def open(self, room: bool) -> None:
        """Unpack this payload, leaving the tuples and sets inside it packed (in `inner`); without
        `room` (it is as deep as MAX_DECODE_DEPTH allows) a tuple or set inside it is refused."""
        hook = functools.partial(_defer, self.inner, self.frozen or self.code == EXT_SET) if room else _refuse_nested
        self.items, self.data = _unpack_items(self.data, hook), b""

    def close(self) -> None:
        """Build the tuple or set, once every one inside it is built."""
        if self.inner:
            _put_values(self.items, len(self.inner))
        self.value = _build(self.code, self.items, self.frozen)
        self.items, self.inner = [], []


def _unpack_nested(root: _Packed) -> Any:
    """Unpack a tuple or set and every tuple and set inside it, one nesting level at a time."""
    opened, level, depth = [], [root], 1
    while level:
        for packed in level:
            packed.open(room=depth < MAX_DECODE_DEPTH)
        opened += level
        level = [inner for packed in level for inner in packed.inner]
        depth += 1
    for packed in reversed(opened):  # the innermost first: each finds the values of those it holds
        packed.close()
    return root.value


def _refuse_nested(code: int, data: bytes) -> Any:
    if code == EXT_TUPLE or code == EXT_SET:
        raise ValueError(f"tuples and sets nested over {MAX_DECODE_DEPTH} deep; sdjobs_nb never writes that")
    return leaf_from_ext(code, data)


def _put_values(items: list[Any], count: int) -> None:
    """Replace the `count` `_Packed` placeholders inside `items` (lists and dicts at any depth) by their values."""
    todo: list[Any] = [items]
    while todo and count:
        container = todo.pop()
        for key, item in enumerate(container) if type(container) is list else container.items():
            if type(item) is _Packed:
                container[key] = item.value
                count -= 1
            elif type(item) is list or type(item) is dict:
                todo.append(item)
