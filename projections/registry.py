"""Which projections exist: every concrete projection registers itself here, by name.

A projection is one file: a class that subclasses a store base (``PostgresProjection``,
``Neo4jProjection``) and is decorated with :func:`registered`, which records it with its CLI
aliases. The store base says how a projection of its store is built from a
:class:`BuildContext` (``build``), whether it can be here (``enabled``) and what would turn it
on (``disabled_hint``); a projection narrows these when it needs more (``TelemetryTables``
runs only when the MCP poller is on). :func:`registrations` first imports every module of the
store packages under ``projections`` (pkgutil), so a new file registers itself without a list
to edit anywhere, and returns them in build order: by the store's ``build_order`` (Postgres,
the store that is always there, first), then by name.

The OTel metrics (:mod:`projections.otel`) are not registered: they consume no topic, apply no
batches and hold no positions; they re-read totals from the Postgres tables and are wired by
the worker itself.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from projections.base import Projection
from projections.pricing import PricingTable
from streams.settings import Settings

__all__ = ["BuildContext", "Buildable", "Registration", "lookup", "registered",
           "registrations"]


@dataclass(frozen=True)
class BuildContext:
    """What building a projection may need: the settings and where the stores are."""

    settings: Settings
    postgres_dsn: str
    pricing: PricingTable
    neo4j_uri: str | None = None
    neo4j_user: str | None = None
    neo4j_password: str | None = None


class Buildable(Protocol):
    """What a registered class provides (its store base implements all of it)."""

    name: ClassVar[str]
    store: ClassVar[str]  # "postgres", "neo4j": the store it writes to
    build_order: ClassVar[int]  # where its store comes in build order
    disabled_hint: ClassVar[str]  # what turns it on when ``enabled`` says no

    @classmethod
    def build(cls, context: BuildContext) -> Projection:
        """A new, unstarted projection on the stores of ``context``."""
        ...

    @classmethod
    def enabled(cls, context: BuildContext) -> bool:
        """Whether ``context`` has what this projection needs."""
        ...


@dataclass(frozen=True)
class Registration:
    """A registered projection class and the names the command line knows it by."""

    cls: type[Buildable]
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def store(self) -> str:
        return self.cls.store


_REGISTERED: dict[str, Registration] = {}
B = TypeVar("B", bound=type[Buildable])


def registered(*aliases: str) -> Callable[[B], B]:
    """Class decorator: register a concrete projection under its ``name`` and ``aliases``.

    Raises ``ValueError`` when another class already holds the name or one of the aliases
    (registering the same class again, e.g. a module imported twice, replaces it)."""

    def register(cls: B) -> B:
        taken = {n: r.cls for r in _REGISTERED.values() for n in (r.name, *r.aliases)}
        clash = sorted(n for n in {cls.name, *aliases}
                       if n in taken and _qualname(taken[n]) != _qualname(cls))
        if clash:
            raise ValueError(f"{_qualname(cls)}: projection name(s) {clash} already registered")
        _REGISTERED[cls.name] = Registration(cls, tuple(aliases))
        return cls

    return register


def registrations() -> list[Registration]:
    """Every registered projection, in build order (store, then name)."""
    _discover()
    return sorted(_REGISTERED.values(), key=lambda r: (r.cls.build_order, r.name))


def lookup(name: str) -> Registration | None:
    """The registration whose name or alias is ``name``, else None."""
    for registration in registrations():
        if name == registration.name or name in registration.aliases:
            return registration
    return None


@functools.cache
def _discover() -> None:
    """Import every module of every package under ``projections`` (the store packages), so
    each projection module has run its :func:`registered` decorator."""
    package = importlib.import_module("projections")
    for store in pkgutil.iter_modules(package.__path__, "projections."):
        if not store.ispkg:
            continue
        store_package = importlib.import_module(store.name)
        for module in pkgutil.walk_packages(store_package.__path__, f"{store.name}."):
            importlib.import_module(module.name)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
