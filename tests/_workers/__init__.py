"""Jobs and helpers for the reliability tests; importable as `_workers` from tests/."""
