"""How large a job's state may be, and how deep a stored value may nest, encoded and decoded."""

from __future__ import annotations

from .._errors import SerializationError

DEFAULT_MAX_STATE_BYTES = 16 * 1024 * 1024

#: containers (lists, dicts, tuples, sets, dataclasses, NamedTuples) a value may nest inside one
#: another to be stored; far below Python's recursion limit, which a job's own stack shares
MAX_DEPTH = 100
#: tuples and sets a blob may nest when it is decoded: ten times MAX_DEPTH, so blobs written before
#: there was a limit still load (the encoder then failed at about 330, the decoder at about 200)
MAX_DECODE_DEPTH = 10 * MAX_DEPTH


class TooDeep(Exception):
    """Raised inside the encoders past MAX_DEPTH; turned into a SerializationError naming the field."""


def deeper(depth: int) -> int:
    """The depth inside one more container, or `TooDeep` past MAX_DEPTH."""
    if depth >= MAX_DEPTH:
        raise TooDeep
    return depth + 1


def too_deep(where: str) -> SerializationError:
    return SerializationError(
        f"{where} is nested more than {MAX_DEPTH} levels deep (lists, dicts, tuples, sets and dataclasses "
        f"inside one another all count), over the limit of {MAX_DEPTH}; flatten it (say, a list of nodes "
        f"that name their parent's index), or keep it in a file and store the path"
    )
