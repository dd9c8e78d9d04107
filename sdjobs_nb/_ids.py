"""Job ids: random (version 4) UUID strings, made without a system call per id."""

from __future__ import annotations

import os
import random

__all__ = ("new_job_id",)

# A private generator: a notebook's random.seed(42) must never make two kernels repeat ids.
# Seeded from os.urandom, and again in a forked child so parent and child never share a stream.
# Ids only need to be unique, not secret: nothing grants access by knowing one.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)

_VERSION_4 = 0x4 << 76
_VARIANT_RFC_4122 = 0x2 << 62
_CLEAR = ~((0xF << 76) | (0x3 << 62))


def new_job_id() -> str:
    """A random UUID (version 4, RFC 4122 variant) as its 36-character string."""
    n = (_rng.getrandbits(128) & _CLEAR) | _VERSION_4 | _VARIANT_RFC_4122
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
