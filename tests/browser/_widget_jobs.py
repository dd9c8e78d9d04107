"""The job of the browser tests, importable by the test process and by the kernels it drives.

It is the suite's shared counter (`tests/jobs_for_tests.Steps`); kernels and Voila put this
folder on their path, so this module puts the tests folder there too.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from jobs_for_tests import Steps  # noqa: E402 - needs the path above

#: counts to `total`, a step every `delay` seconds, checkpointing every 10 steps
SlowCount = functools.partial(Steps, total=1500, delay=0.02)
