"""Typed pandas columns from the values of a history read (runs on the read thread, off the loop).

Fetched columns go straight from the row tuples into numpy (`np.fromiter`, no lists);
constant ones are filled without touching rows, and differences are computed in numpy.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from .._query import HistoryColumns

__all__ = ("STR", "ColumnBuilder", "strings", "times", "json_objects")

#: The dtype pandas itself gives text ("str" from pandas 3, object before).
STR = pd.Series(["text"]).dtype


class ColumnBuilder:
    """Turns the fields of one `HistoryColumns` into typed arrays, newest first."""

    def __init__(self, columns: HistoryColumns) -> None:
        self.columns = columns
        self.n = columns.length
        self._floats: dict[str, np.ndarray] = {}
        self._missing_text: Any = None
        if columns.in_insert_order:
            self._put_newest_first()

    def _put_newest_first(self) -> None:
        """Reorder the fetched rows if jobs finished out of insert order (numpy's `HistoryColumns.order`).

        Moving row tuples is one pointer shuffle per part; reordering finished columns
        instead would copy every one of them.
        """
        finished = self.floats("finished_at")
        if (finished[:-1] >= finished[1:]).all():
            return
        order = np.argsort(-finished, kind="stable")  # stable: ties keep newest-inserted first
        pick = itemgetter(*order.tolist())  # out of order means at least two rows: pick gives a tuple
        parts = tuple((fields, pick(rows)) for fields, rows in self.columns.parts)
        self.columns = dataclasses.replace(self.columns, parts=parts, in_insert_order=False)
        self._floats = {field: values[order] for field, values in self._floats.items()}

    def _constant(self, field: str) -> tuple[bool, Any]:
        constants = self.columns.constants
        return (True, constants[field]) if field in constants else (False, None)

    def strings(self, field: str) -> Any:
        is_constant, value = self._constant(field)
        if is_constant and value is None:
            if self._missing_text is None:  # made once, copied after: no per-row checks
                self._missing_text = pd.Series(None, index=pd.RangeIndex(self.n), dtype=STR).array
            return self._missing_text.copy()
        if is_constant:
            return pd.Series(value, index=pd.RangeIndex(self.n), dtype=STR).array
        return strings(self.columns.fetched_values(field), self.n)

    def ints(self, field: str) -> np.ndarray:
        is_constant, value = self._constant(field)
        if is_constant:
            return np.full(self.n, value, dtype=np.int64)
        return np.fromiter(self.columns.fetched_values(field), dtype=np.int64, count=self.n)

    def floats(self, field: str) -> np.ndarray:
        """Float64 values, NaN for None (cached: differences and times reuse them)."""
        if field not in self._floats:
            self._floats[field] = self._make_floats(field)
        return self._floats[field]

    def _make_floats(self, field: str) -> np.ndarray:
        is_constant, value = self._constant(field)
        if is_constant:
            return np.full(self.n, np.nan if value is None else value, dtype=np.float64)
        if field in self.columns.derived:
            a, b = self.columns.derived[field]
            return self.floats(a) - self.floats(b)
        try:
            return np.fromiter(self.columns.fetched_values(field), dtype=np.float64, count=self.n)
        except TypeError:  # a None among them
            return np.fromiter((np.nan if v is None else v for v in self.columns.fetched_values(field)),
                               dtype=np.float64, count=self.n)

    def times(self, field: str) -> pd.DatetimeIndex:
        return times(self.floats(field))

    def categories(self, field: str, labels: tuple[str, ...]) -> pd.Categorical:
        """A categorical from codes into `labels` (-1 for a value outside them)."""
        is_constant, value = self._constant(field)
        if is_constant:
            codes = np.full(self.n, value, dtype=np.int8)
        else:
            codes = np.fromiter(self.columns.fetched_values(field), dtype=np.int8, count=self.n)
        return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(labels))

    def objects(self, field: str) -> np.ndarray:
        """Python objects as they are (one array slot per row)."""
        out = np.empty(self.n, dtype=object)
        for i, value in enumerate(self.columns.fetched_values(field)):
            out[i] = value
        return out

    def json_objects(self, field: str) -> np.ndarray:
        is_constant, value = self._constant(field)
        if is_constant and value is None:
            return np.full(self.n, None, dtype=object)
        return json_objects(self.columns.fetched_values(field), self.n)


def strings(values: Iterable[Any], n: int) -> Any:
    """Text values (None for none) as a column of pandas' own text dtype."""
    return pd.array(np.fromiter(values, dtype=object, count=n), dtype=STR)


def times(seconds: np.ndarray) -> pd.DatetimeIndex:
    """Epoch seconds (NaN for none) as timezone-aware UTC datetimes, truncated to the microsecond.

    Truncation (not rounding) keeps filters exact: `history(since=t)` with a `t` taken from
    a frame includes that row, and `until=t` excludes it.
    """
    missing = np.isnan(seconds)
    micros = np.floor(np.where(missing, 0.0, seconds) * 1e6).astype(np.int64)
    stamps = micros.view("datetime64[us]")
    if missing.any():
        stamps[missing] = np.datetime64("NaT")
    return pd.DatetimeIndex(stamps).tz_localize("UTC")


def json_objects(texts: Iterable[str | None], n: int) -> np.ndarray:
    """Decode JSON text per row (None stays None) into an object array; no two rows share a dict."""
    out = np.empty(n, dtype=object)
    for i, text in enumerate(texts):
        out[i] = None if text is None else json.loads(text)
    return out
