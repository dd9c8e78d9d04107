"""What crosses into and out of the sandbox: the job's input bytes and its result."""

from __future__ import annotations

import json
from typing import Any

from .._errors import ExtensionTrap, SerializationError

__all__ = ("BYTES", "JSON", "encode_input", "decode_result")

BYTES = "bytes"  #: the input was given as bytes; the result is returned as bytes
JSON = "json"    #: the input was JSON-able data (sent as UTF-8 JSON); the result is parsed as JSON


def encode_input(data: Any) -> tuple[bytes, str]:
    """Return the bytes a guest reads as its input, and the format its result comes back in.

    Bytes go as they are; anything else is sent as compact UTF-8 JSON (None: an empty input).
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), BYTES
    if data is None:
        return b"", JSON
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), JSON
    except (TypeError, ValueError) as e:
        raise SerializationError(
            f"job_data for an extension job must be bytes or JSON-able data (dicts, lists, str, numbers): {e}"
        ) from None


def decode_result(name: str, input_format: str, raw: bytes | None) -> Any:
    """Turn the bytes the guest passed to set_result into the job's result (None when it set none)."""
    if raw is None or input_format == BYTES:
        return raw
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as e:
        raise ExtensionTrap(
            f"extension job {name} set a result that is not JSON ({e}); jobs given JSON data must "
            f"answer in JSON, or be given bytes to answer in bytes"
        ) from None
