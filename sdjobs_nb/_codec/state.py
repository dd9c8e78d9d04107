"""A job's state <-> a msgpack map of its field names: encode (refusing what a resume could not
rebuild, or over the size limit), check at dispatch, and decode before coercion."""

from __future__ import annotations

from typing import Any

from .._errors import InvalidJobData, SerializationError, StateTooLarge
from .fields import Shape, field_plan
from .fit import misfit
from .limits import DEFAULT_MAX_STATE_BYTES, TooDeep, too_deep
from .plain import plain_or_refuse
from .wire import pack_checked, unpack


def encode_value(value: Any, where: str = "value") -> bytes:
    """Encode any storable value (a result, a context) to msgpack bytes."""
    return pack_checked(plain_or_refuse(value, where, False), where)


def encode_state(job: Any, max_bytes: int = DEFAULT_MAX_STATE_BYTES) -> bytes:
    """Encode a job dataclass's fields as a msgpack map of field names.

    Raises SerializationError naming the field for a value that cannot be stored, or that a
    resume could not rebuild as it is (a float in an `int` field, a dataclass in an `Any` one),
    and StateTooLarge over `max_bytes`: refused now, while `run` can still fix it.
    """
    cls = type(job)
    plain = {}
    for name, hint, shape in field_plan(cls):
        value = getattr(job, name)
        plain[name] = value if type(value) in shape.quick else _field_to_plain(value, hint, shape, name, cls)
    blob = pack_checked(plain, cls.__name__)
    if len(blob) > max_bytes:
        raise StateTooLarge(
            f"{cls.__name__} state is {len(blob):,} bytes, over the limit of {max_bytes:,}; keep large "
            f"data in files and store their paths, or raise max_state_bytes in JobManager.open"
        )
    return blob


def _field_to_plain(value: Any, hint: Any, shape: Shape, name: str, cls: type) -> Any:
    where = f"field {name!r} of {cls.__name__}"
    typed = shape.kind != "untyped" and type(value) is not shape.loose
    plain = plain_or_refuse(value, where, untyped=not typed)  # untyped: it refuses what only an annotation rebuilds
    if typed:
        try:
            misfit(value, hint, name, 0)
        except TooDeep:
            raise too_deep(where) from None
        except InvalidJobData as e:
            raise SerializationError(
                f"{cls.__name__} cannot be saved: {e}. A resume could not rebuild it, so it is refused now: "
                f"store a value of the annotated type, or change the annotation"
            ) from None
    return plain


def check_instance(job: Any) -> None:
    """Raise `InvalidJobData` if a job's field values would not come back as they are from a save.

    Run at dispatch so a job that could not be re-created from its saved state (say a float
    in an `int` field) is refused before anything is written, not found broken at resume.
    Raises SerializationError for a value nested deeper than MAX_DEPTH.
    """
    cls = type(job)
    problems = []
    for name, hint, shape in field_plan(cls):
        value = getattr(job, name)
        if type(value) in shape.quick:
            continue
        try:
            misfit(value, hint, name, 0)
        except InvalidJobData as e:
            problems.append(str(e))
        except TooDeep:
            raise too_deep(f"field {name!r} of {cls.__name__}") from None
    if problems:
        raise InvalidJobData(f"bad state for job {cls.__name__}: " + "; ".join(problems))


def decode_fields(blob: bytes) -> dict[str, Any]:
    """Decode a stored state blob to a dict of field values (before coercion)."""
    data = unpack(blob)
    if not isinstance(data, dict):
        raise ValueError(f"stored state is a {type(data).__name__}, not a map of field names")
    return data
