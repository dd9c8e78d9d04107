"""The `Job` base class and the registry that re-creates jobs from stored state."""

from __future__ import annotations

import dataclasses
import threading
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from ._codec import coerce_fields, decode_fields
from ._errors import BrokenJob, InvalidJobData, JobDefinitionError, UnknownJob, VersionMismatch

if TYPE_CHECKING:
    from ._runtime.context import JobContext

__all__ = ("Job", "JobRegistry", "registry")


class JobRegistry:
    """Maps job NAMEs to classes; subclassing `Job` with a NAME registers it."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Job]] = {}
        self._lock = threading.Lock()
        self._listeners: list[weakref.WeakMethod] = []

    def add_listener(self, method: Any) -> None:
        """Call bound `method(name)` after each registration (held weakly: managers come and go)."""
        self._listeners.append(weakref.WeakMethod(method))

    def register(self, cls: type[Job]) -> None:
        """Register `cls` under its NAME; re-defining the same class (a re-run cell) replaces it."""
        with self._lock:
            old = self._classes.get(cls.NAME)
            if old is not None and old is not cls and _qualified(old) != _qualified(cls):
                raise JobDefinitionError(
                    f"job name {cls.NAME!r} is already used by {_qualified(old)}; "
                    f"{_qualified(cls)} must choose another NAME"
                )
            self._classes[cls.NAME] = cls
        self._notify(cls.NAME)

    def _notify(self, name: str) -> None:
        alive = []
        for ref in self._listeners:
            method = ref()
            if method is not None:
                alive.append(ref)
                method(name)
        self._listeners = alive

    def unregister(self, name: str) -> None:
        """Forget a name (used by tests and by unloading extensions)."""
        with self._lock:
            self._classes.pop(name, None)

    def names(self) -> list[str]:
        """Return the registered job names, sorted."""
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def find(self, name: str) -> type[Job] | None:
        """Return the class registered under `name`, or None."""
        return self._classes.get(name)

    def get(self, name: str) -> type[Job]:
        """Return the class registered under `name`, or raise `UnknownJob`."""
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(self.names()) or "none yet"
            raise UnknownJob(
                f"no job class is registered under {name!r} (known: {known}); run the code that "
                f"defines it (the class with NAME = {name!r}) before dispatching or resuming"
            ) from None

    def build(self, name: str, data: dict[str, Any]) -> Job:
        """Create a job of `name` from a dict of field values, checking every field."""
        cls = self.get(name)
        return cls(**coerce_fields(cls, data))

    def create(self, name: str, version: int, blob: bytes) -> Job:
        """Re-create a stored job, migrating or refusing a different VERSION."""
        cls = self._stored_class(name)
        try:
            data = decode_fields(blob)
        except Exception as e:
            raise BrokenJob(f"stored state of a {name!r} job is not readable msgpack ({e}); the record was kept") from e
        if version != cls.VERSION:
            data = _migrate(cls, data, version)
        try:
            return cls(**coerce_fields(cls, data))
        except InvalidJobData as e:
            raise BrokenJob(
                f"stored state does not fit {name!r} VERSION {cls.VERSION}: {e}. To carry on, put the class's "
                f"fields back as they were, or bump VERSION to {cls.VERSION + 1} and add "
                f"`@classmethod migrate(cls, data, from_version)` that turns the old fields into the new ones; "
                f"until then the job waits untouched in manager.broken(), then resume it"
            ) from e

    def _stored_class(self, name: str) -> type[Job]:
        try:
            return self.get(name)
        except UnknownJob as e:
            raise UnknownJob(
                f"{e}. The stored job is kept and waits in manager.broken(): a queued one starts as soon as "
                f"its class is defined, a paused one can be resumed then"
            ) from None


def _migrate(cls: type[Job], data: dict[str, Any], version: int) -> dict[str, Any]:
    migrate = getattr(cls, "migrate", None)
    if migrate is None:
        raise VersionMismatch(cls.NAME, version, cls.VERSION)
    migrated = migrate(data, version)
    if not isinstance(migrated, dict):
        raise JobDefinitionError(f"{cls.__qualname__}.migrate must return a dict of fields, not {type(migrated).__name__}")
    return migrated


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


registry = JobRegistry()


class Job:
    """Base class of every job: subclass it as a `@dataclass` with NAME and `async def run(self, ctx)`.

    Class attributes (not fields): ``NAME`` (registry key), ``VERSION`` (stored with the
    state and checked on resume), ``IS_RESUMABLE`` (False: an interrupted job fails instead
    of pausing). A class without its own NAME is an abstract base and is not registered.
    """

    NAME: ClassVar[str]
    VERSION: ClassVar[int] = 1
    IS_RESUMABLE: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "NAME" not in cls.__dict__:
            return
        _check_definition(cls)
        registry.register(cls)

    async def run(self, ctx: JobContext) -> Any:
        """Do the work; return the result `handle.wait()` gives back."""
        raise NotImplementedError(f"{type(self).__qualname__} must define `async def run(self, ctx)`")


def _check_definition(cls: type[Job]) -> None:
    name, version = cls.__dict__["NAME"], cls.VERSION
    colon_ok = cls.__dict__.get("_EXTENSION_JOB", False)  # extensions name jobs 'extension_id:job_name'
    if not isinstance(name, str) or not name or name != name.strip() or (":" in name and not colon_ok):
        raise JobDefinitionError(
            f"{cls.__qualname__}.NAME must be a non-empty string without surrounding spaces or ':' "
            f"(':' is reserved for extension jobs), got {name!r}"
        )
    if type(version) is not int or version < 1:
        raise JobDefinitionError(f"{cls.__qualname__}.VERSION must be an int >= 1, got {version!r}")
    if "run" not in cls.__dict__ and cls.run is Job.run:
        raise JobDefinitionError(f"{cls.__qualname__} must define `async def run(self, ctx)`")


def ensure_dispatchable(job: object) -> type[Job]:
    """Return the job's class after checking it is a registered dataclass `Job` instance."""
    cls = type(job)
    if not isinstance(job, Job):
        raise TypeError(f"dispatch needs a sj.Job instance, got {cls.__name__}; subclass sj.Job")
    if "NAME" not in cls.__dict__:
        raise JobDefinitionError(f"{cls.__qualname__} has no NAME of its own; set NAME = '...' on the class")
    if not dataclasses.is_dataclass(cls):
        raise JobDefinitionError(f"{cls.__qualname__} must be decorated with @dataclass so its state can be saved")
    if registry.get(cls.NAME) is not cls:
        registry.register(cls)  # e.g. a @dataclass(slots=True) copy of the class
    return cls
