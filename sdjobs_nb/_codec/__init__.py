"""Job state <-> msgpack, as a map of field names; never positional, never pickle.

Self-describing values (datetime, Path, UUID, tuple, set, ints beyond 64 bits) travel as msgpack
ext types whose payloads are plain data. Enums, NamedTuples and nested dataclasses are rebuilt
from the *annotation* of the field that holds them, so decoding a blob never imports or runs code
named inside it. For the same reason a save refuses such a value where no annotation names its
class (it would come back as a plain dict, value or tuple), and a value that does not fit its
field's annotation (a resume could not rebuild it). Strings are stored as they are, lone
surrogates included.

Limits: a stored value nests at most `MAX_DEPTH` containers inside one another (checked when it is
encoded). Decoding opens nested tuples and sets in a loop, not by recursion, at most
`MAX_DECODE_DEPTH` of them, and msgpack refuses lists and maps nested over 1024 deep: no blob,
whatever its origin, can exhaust the stack.

The modules, each importing only those above it in this list:
`limits` (size and depth limits), `describe` (how messages name paths, values, types), `ext` (the
ext type codes and the single values they carry), `nested` (decoding nested tuples and sets without
recursion), `wire` (msgpack pack/unpack), `fields` (a class's stored fields, hints, annotation
shapes), `plain` (Python value -> plain data, refusals), `coerce` (plain data -> annotated values),
`fit` (will a saved value come back as itself), `state` (encode, check and decode a job's state).
"""

from __future__ import annotations

from .coerce import coerce_fields
from .limits import DEFAULT_MAX_STATE_BYTES, MAX_DECODE_DEPTH, MAX_DEPTH
from .state import check_instance, decode_fields, encode_state, encode_value
from .wire import pack, unpack

__all__ = (
    "encode_state", "encode_value", "check_instance", "decode_fields", "coerce_fields", "pack", "unpack",
    "DEFAULT_MAX_STATE_BYTES", "MAX_DEPTH", "MAX_DECODE_DEPTH",
)
