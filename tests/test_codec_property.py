"""Properties of the state codec, over values and bytes that hypothesis makes up.

- Any value built of lists, dicts (str or int keys), tuples and sets, holding ints of any size,
  strings with lone surrogates, NaN and infinities, bytes, nested up to 1,000 deep, either comes
  back as it was or is refused with a SerializationError naming its field, and it is refused
  exactly when it nests more than `MAX_DEPTH` containers.
- No byte string, whatever it holds, crashes the decoder: each one is decoded in a separate
  process, which must end normally (a segfault would end it with -11).
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sdjobs_nb as sj
from sdjobs_nb._codec import MAX_DECODE_DEPTH, MAX_DEPTH, encode_state, encode_value, unpack

STABLE = settings(derandomize=True, database=None, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Anything(sj.Job):
    NAME = "test_codec_anything"
    value: Any = None

    async def run(self, ctx: sj.JobContext) -> None:
        return None


# --- values -----------------------------------------------------------------------------------

ODD_CHARACTERS = ["a", "é", "\x00", "\udce9", "\ud800", "\udfff", "名", "🚀"]
TEXT = st.one_of(st.text(max_size=6), st.lists(st.sampled_from(ODD_CHARACTERS), max_size=6).map("".join))
EDGE_INTS = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**300, -(10**300)]
INTS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from(EDGE_INTS))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), TEXT, st.binary(max_size=6))
HASHABLES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3).map(tuple),
                                                          st.frozensets(inner, max_size=3)), max_leaves=6)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(TEXT, INTS), inner, max_size=4),
                     st.lists(inner, max_size=4).map(tuple), st.sets(HASHABLES, max_size=4))


SMALL = st.recursive(SCALARS, _containers, max_leaves=12)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _wrap(kind: str, value: Any) -> Any:
    if kind == "list":
        return [value]
    if kind == "dict":
        return {"k": value}
    if kind == "set" and _hashable(value):
        return frozenset({value})
    return (value,)


@st.composite
def values(draw: st.DrawFn) -> Any:
    """A small value wrapped in up to 1,000 more containers, in a drawn pattern of kinds."""
    value = draw(SMALL)
    depth = draw(st.one_of(st.integers(0, 1000), st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH])))
    pattern = draw(st.lists(st.sampled_from(["list", "dict", "tuple", "set"]), min_size=1, max_size=6))
    for i in range(depth):
        value = _wrap(pattern[i % len(pattern)], value)
    return value


def nesting(value: Any) -> int:
    """How many containers `value` nests inside one another, empty ones included (a loop: values
    go 1,000 deep, past Python's recursion limit)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            deepest = max(deepest, depth + 1)
            todo += [(v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def canon(value: Any) -> Any:
    """A form of `value` that compares equal when the codec kept it: NaN equals NaN, a type change
    shows (True is not 1), and a frozenset may come back as a set."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else struct.pack(">d", value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((canon(k), canon(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(canon(v) for v in value))
    return (type(value).__name__, value)


@settings(STABLE, max_examples=200)
@given(values())
def test_a_value_round_trips_or_is_refused_naming_its_field(value: Any) -> None:
    try:
        blob = encode_state(Anything(value))
    except sj.SerializationError as e:
        assert "field 'value' of Anything" in str(e), str(e)
        assert f"limit of {MAX_DEPTH}" in str(e), str(e)
        assert nesting(value) > MAX_DEPTH
        return
    assert nesting(value) <= MAX_DEPTH
    again = sj.registry.create(Anything.NAME, 1, blob)
    assert canon(again.value) == canon(value)
    assert canon(unpack(encode_value(value))) == canon(value)


# --- bytes ------------------------------------------------------------------------------------

PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=4),
              st.binary(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)


def _packed(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _with_exts(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Our ext types (and others) around packed values or bytes: a tuple of a set of a date..."""
    payload = st.one_of(st.binary(max_size=12), inner.map(_packed), st.lists(inner, max_size=3).map(_packed))
    return st.one_of(st.lists(inner, max_size=3), st.builds(msgpack.ExtType, st.integers(0, 9), payload))


MSGPACKISH = st.recursive(PLAIN, _with_exts, max_leaves=10).map(_packed)


def _flip(blob: bytes, at: int, byte: int) -> bytes:
    if not blob:
        return bytes([byte])
    at %= len(blob)
    return blob[:at] + bytes([byte]) + blob[at + 1:]


BLOBS = st.one_of(
    st.binary(max_size=64),
    MSGPACKISH,
    st.builds(_flip, MSGPACKISH, st.integers(0, 10_000), st.integers(0, 255)),
    st.builds(lambda fields, tail: _packed(fields) + tail, st.dictionaries(st.text(max_size=3), PLAIN, max_size=3),
              st.binary(max_size=3)),
)


def chain(kinds: str) -> bytes:
    """msgpack nested as `kinds` says, outermost first: l a list, t a tuple, s a set (ext types 4
    and 5 around an array); built in linear time however deep."""
    prefixes, length = [], 1  # the innermost value: an empty array
    for kind in reversed(kinds):
        if kind == "l":
            prefixes.append(b"\x91")
            length += 1
        else:
            code = b"\x04" if kind == "t" else b"\x05"
            prefixes.append(b"\xc9" + (length + 1).to_bytes(4, "big") + code + b"\x91")
            length += 7
    return b"".join(reversed(prefixes)) + b"\x90"


HAND_MADE = [
    chain("t" * MAX_DECODE_DEPTH), chain("t" * (MAX_DECODE_DEPTH + 1)), chain("t" * 100_000), chain("s" * 2000),
    chain("l" * 1024), chain("l" * 1025), chain("l" * 100_000), chain(("l" * 1000 + "t") * 50),
    chain(("t" + "s") * 600), chain("tl" * 5000), b"\x81\xa5value" + chain("t" * 250),
]

DECODE_EACH = """
import sys
from sdjobs_nb._codec import decode_fields, unpack

data, pos, count = open(sys.argv[1], "rb").read(), 0, 0
while pos < len(data):
    size = int.from_bytes(data[pos:pos + 4], "big")
    blob, pos = data[pos + 4:pos + 4 + size], pos + 4 + size
    for decode in (unpack, decode_fields):
        try:
            decode(blob)
        except Exception:  # refused: fine; a crash would end the process instead
            pass
    count += 1
print(count)
"""


def test_no_byte_string_crashes_the_decoder(tmp_path: Path) -> None:
    blobs = list(HAND_MADE)

    @settings(STABLE, max_examples=300)
    @given(BLOBS)
    def collect(blob: bytes) -> None:
        blobs.append(blob)

    collect()
    batch = tmp_path / "blobs"
    batch.write_bytes(b"".join(len(blob).to_bytes(4, "big") + blob for blob in blobs))
    done = subprocess.run([sys.executable, "-c", DECODE_EACH, str(batch)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"exit code {done.returncode} (-11 is a segfault)\n{done.stderr[-3000:]}"
    assert int(done.stdout) == len(blobs)
