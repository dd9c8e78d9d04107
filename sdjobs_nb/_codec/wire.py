"""msgpack bytes: pack plain data (ints of any size, any str, lone surrogates included) and unpack
a blob; unpacking never runs code."""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from .._errors import SerializationError
from .ext import pack_big_int
from .nested import ext_hook


_packers = threading.local()  # one reusable Packer per thread (a Packer is not thread-safe)


def pack(value: Any) -> bytes:
    """Pack plain data (already converted) with msgpack: ints of any size, any str.

    A kept `Packer` costs a fifth of `msgpack.packb`, which makes one per call (every dispatch,
    checkpoint and finish packs); it empties its buffer after each call, and after a failed one.
    """
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True, default=pack_big_int)
    try:
        return packer.pack(value)
    except UnicodeEncodeError:  # a lone surrogate (a file name from os.listdir, say): store it as it is
        return msgpack.packb(value, use_bin_type=True, default=pack_big_int, unicode_errors="surrogatepass")


def pack_checked(plain: Any, what: str) -> bytes:
    """`pack`, raising SerializationError naming the field that msgpack refused (not expected)."""
    try:
        return pack(plain)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        where = what
        for name, value in plain.items() if isinstance(plain, dict) else ():
            try:
                pack(value)
            except Exception:
                where = f"field {name!r} of {what}"
                break
        raise SerializationError(f"{where} cannot be stored ({type(e).__name__}: {e})") from e


def unpack(blob: bytes) -> Any:
    """Unpack msgpack data written by `pack` or `encode_value`; never runs code.

    A malformed or hostile blob raises ValueError (or TypeError): never a crash, never deep recursion.
    """
    return msgpack.unpackb(blob, raw=False, ext_hook=ext_hook, strict_map_key=False, unicode_errors="surrogatepass")
