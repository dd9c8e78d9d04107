"""Everything that talks to SQLite lives in this package."""

from . import store
from .store import Store

__all__ = ("Store", "store")
