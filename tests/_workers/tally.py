"""Counts for RELIABILITY.md: tests append what each fault did to `$SDJOBS_RELIABILITY_LOG` (JSON lines).

Nothing is written when the variable is unset (the ordinary test run).
"""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "SDJOBS_RELIABILITY_LOG"


def record(fault: str, **facts: Any) -> None:
    """Append one fault injection's facts (kills, interrupted jobs, re-done items, ...)."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"fault": fault, **facts}) + "\n")
