"""Typed pandas columns from plain analytics values (runs on the database thread)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

__all__ = ("STR", "strings", "floats", "ints", "times", "categories", "json_objects")

#: The dtype pandas itself gives text ("str" from pandas 3, object before).
STR = pd.Series(["text"]).dtype
UTC_MICROS = pd.DatetimeTZDtype("us", "UTC")


def strings(values: Iterable[Any], n: int) -> pd.api.extensions.ExtensionArray | np.ndarray:
    return pd.array(np.fromiter(values, dtype=object, count=n), dtype=STR)


def floats(values: Iterator[Any], n: int) -> np.ndarray:
    """Return float64 values, None becoming NaN."""
    values = list(values)
    try:
        return np.array(values, dtype=np.float64)
    except TypeError:  # a None among them
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def ints(values: Iterable[Any], n: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=n)


def times(seconds: np.ndarray) -> pd.DatetimeIndex:
    """Epoch seconds (NaN for none) as timezone-aware UTC datetimes, to the microsecond."""
    missing = np.isnan(seconds)
    micros = np.rint(np.where(missing, 0.0, seconds) * 1e6).astype(np.int64)
    stamps = micros.view("datetime64[us]")
    if missing.any():
        stamps[missing] = np.datetime64("NaT")
    return pd.DatetimeIndex(stamps).tz_localize("UTC")


def categories(codes: Iterable[int], n: int, labels: tuple[str, ...]) -> pd.Categorical:
    """Build a categorical from codes into `labels` (-1 for a value outside them)."""
    return pd.Categorical.from_codes(np.fromiter(codes, dtype=np.int8, count=n), dtype=pd.CategoricalDtype(labels))


def json_objects(texts: Iterable[str | None], n: int) -> np.ndarray:
    """Decode JSON text per row (None stays None) into an object array."""
    out = np.empty(n, dtype=object)
    out[:] = [None if t is None else json.loads(t) for t in texts]
    return out
