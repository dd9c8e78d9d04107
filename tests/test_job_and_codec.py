"""Defining jobs, the registry, and the msgpack codec."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest

import sdjobs_nb as sj
from sdjobs_nb._codec import coerce_fields, decode_fields, encode_state

from jobs_for_tests import Add
from support import db_rows


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    x: int
    tags: list[str] = field(default_factory=list)


@dataclass
class Rich(sj.Job):
    NAME = "test_rich_state"
    when: dt.datetime
    path: Path
    ident: uuid.UUID
    color: Color
    inner: Inner
    pair: tuple[int, str]
    blob: bytes = b""
    maybe: int | None = None
    table: dict[str, float] = field(default_factory=dict)
    day: dt.date = dt.date(2026, 1, 2)

    async def run(self, ctx):
        return None


def make_rich() -> Rich:
    return Rich(
        when=dt.datetime(2026, 11, 28, 12, 30, tzinfo=dt.timezone.utc), path=Path("/data/x.csv"),
        ident=uuid.UUID("12345678-1234-5678-1234-567812345678"), color=Color.BLUE,
        inner=Inner(3, ["a", "b"]), pair=(1, "one"), blob=b"\x00\xff", maybe=None, table={"a": 1.5},
    )


def test_state_round_trips_every_supported_type():
    job = make_rich()
    again = sj.registry.create("test_rich_state", 1, encode_state(job))
    assert again == job
    assert isinstance(again.inner, Inner) and again.color is Color.BLUE


def test_state_is_a_map_of_field_names_not_positions():
    data = msgpack.unpackb(encode_state(Add(1, 2)), raw=False)
    assert data == {"a": 1, "b": 2}


@pytest.mark.parametrize("bad", [threading.Lock(), lambda: 1, open(__file__)])
def test_unserializable_state_names_the_field(bad):
    @dataclass
    class Holder(sj.Job):
        NAME = "test_holder"
        thing: object = None

        async def run(self, ctx):
            return None

    with pytest.raises(sj.SerializationError, match="field 'thing' of Holder"):
        encode_state(Holder(bad))


async def test_dispatch_refuses_unserializable_state_before_writing(manager, library):
    @dataclass
    class Holder2(sj.Job):
        NAME = "test_holder2"
        thing: object = None

        async def run(self, ctx):
            return None

    with pytest.raises(sj.SerializationError, match="thing"):
        await manager.dispatch(Holder2(threading.Lock()))
    assert db_rows(library, "SELECT count(*) FROM jobs") == [(0,)]


def test_duplicate_name_from_another_class_names_both():
    with pytest.raises(sj.JobDefinitionError, match="test_add.*already used by.*Add"):
        @dataclass
        class Other(sj.Job):
            NAME = "test_add"

            async def run(self, ctx):
                return None


def test_redefining_the_same_class_replaces_it_like_a_rerun_cell():
    def define():
        @dataclass
        class Rerun(sj.Job):
            NAME = "test_rerun"
            n: int = 0

            async def run(self, ctx):
                return self.n

        return Rerun

    first, second = define(), define()
    assert first is not second
    assert sj.registry.get("test_rerun") is second


@pytest.mark.parametrize("name", ["", " spaced ", "has:colon", 7])
def test_bad_names_are_refused(name):
    with pytest.raises(sj.JobDefinitionError, match="NAME"):
        type("Bad", (sj.Job,), {"NAME": name, "run": lambda self, ctx: None})


def test_a_class_without_its_own_name_is_an_abstract_base():
    class Base(sj.Job):
        async def run(self, ctx):
            return None

    assert "Base" not in sj.registry.names()


def test_unknown_name_lists_known_names():
    with pytest.raises(sj.UnknownJob, match="test_add"):
        sj.registry.get("nope")


def test_coercion_names_missing_extra_and_ill_typed_fields():
    with pytest.raises(sj.InvalidJobData) as info:
        coerce_fields(Add, {"b": "x", "c": 1})
    text = str(info.value)
    assert "missing field 'a'" in text and "unknown field 'c'" in text and "'b'" in text


def test_coercion_converts_plain_data_onto_annotations():
    data = {"when": "2026-01-01T00:00:00+00:00", "path": "/tmp/a", "ident": str(uuid.uuid4()),
            "color": "red", "inner": {"x": 1}, "pair": [2, "two"]}
    job = Rich(**coerce_fields(Rich, data))
    assert job.color is Color.RED and job.inner == Inner(1) and job.pair == (2, "two")
    assert isinstance(job.path, Path) and job.when.tzinfo is not None


def test_decode_never_runs_code_from_the_blob():
    # an ext type we do not know must not be interpreted; a non-map is refused
    with pytest.raises(ValueError):
        decode_fields(msgpack.packb([1, 2, 3]))


def test_version_mismatch_without_migrate():
    blob = encode_state(Add(1, 2))

    @dataclass
    class V2(sj.Job):
        NAME = "test_versioned"
        VERSION = 2
        a: int = 0

        async def run(self, ctx):
            return self.a

    with pytest.raises(sj.VersionMismatch, match="VERSION 1.*VERSION 2"):
        sj.registry.create("test_versioned", 1, blob)


def test_version_mismatch_with_migrate():
    @dataclass
    class V3(sj.Job):
        NAME = "test_versioned_migrating"
        VERSION = 3
        total: int = 0

        @classmethod
        def migrate(cls, data, from_version):
            return {"total": data["a"] + data["b"]}

        async def run(self, ctx):
            return self.total

    job = sj.registry.create("test_versioned_migrating", 1, encode_state(Add(1, 2)))
    assert job == V3(total=3)
    assert dataclasses.is_dataclass(job)
