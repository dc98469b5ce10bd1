"""The sources registry: every file source, found by importing :mod:`streams.producers`.

A source is declared once, on its :class:`~streams.producers.base.FileProducer` subclass
(``source``, :meth:`~streams.producers.base.FileProducer.default_roots`, ``provider``,
``help_text``, ``example_root``, ``rank``, ``fallback``). :func:`producer_classes` imports every
module of the :mod:`streams.producers` package (``pkgutil``, no list kept by hand) and keeps
the subclasses that set ``source`` in their own body; the CLI's ``--source`` handling, the parse
step's routing and the GenAI provider of the token metrics all read it here. Discovery runs
once, on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from streams import producers
from streams.producers.base import FileProducer

__all__ = ["fallback_source", "producer_classes", "producer_of", "provider_of", "source_names"]


@functools.cache
def producer_classes() -> tuple[type[FileProducer], ...]:
    """Every declared source's producer class, by ``rank`` then name.

    Raises:
        TypeError: two classes declare the same ``source``, a source lacks its ``help_text``
            or ``example_root``, or not exactly one source is the ``fallback``; the message
            names the classes.
    """
    found: dict[str, type[FileProducer]] = {}
    for module in _producer_modules():
        for cls in _declared_in(module):
            other = found.setdefault(cls.source, cls)
            if other is not cls:
                raise TypeError(f"source {cls.source!r} is declared twice: by "
                                f"{_name(other)} and {_name(cls)}")
    classes = tuple(sorted(found.values(), key=lambda cls: (cls.rank, cls.source)))
    _check(classes)
    return classes


def source_names() -> list[str]:
    """The names of every source, in :func:`producer_classes` order."""
    return [cls.source for cls in producer_classes()]


def producer_of(source: str) -> type[FileProducer] | None:
    """The producer class of ``source``, or None for a name no producer declares."""
    return _by_name().get(source)


def provider_of(source: str) -> str | None:
    """The ``gen_ai.provider.name`` ``source`` declares; None when it declares none or is not
    a source."""
    cls = producer_of(source)
    return cls.provider if cls is not None else None


def fallback_source() -> str:
    """The source a bare ``--source`` path goes to when no source claims it."""
    return next(cls.source for cls in producer_classes() if cls.fallback)


@functools.cache
def _by_name() -> dict[str, type[FileProducer]]:
    return {cls.source: cls for cls in producer_classes()}


def _producer_modules() -> list[ModuleType]:
    prefix = f"{producers.__name__}."
    return [importlib.import_module(info.name)
            for info in pkgutil.iter_modules(producers.__path__, prefix)]


def _declared_in(module: ModuleType) -> list[type[FileProducer]]:
    """The producer classes ``module`` defines that declare a source of their own."""
    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, FileProducer)
            and value.__module__ == module.__name__ and "source" in vars(value)]


def _check(classes: tuple[type[FileProducer], ...]) -> None:
    for cls in classes:
        missing = [attr for attr in ("help_text", "example_root") if not getattr(cls, attr)]
        if missing:
            raise TypeError(f"{_name(cls)} declares source {cls.source!r} without "
                            f"{' and '.join(missing)}")
    fallbacks = [_name(cls) for cls in classes if cls.fallback]
    if len(fallbacks) != 1:
        raise TypeError(f"exactly one source must set fallback = True; found "
                        f"{', '.join(fallbacks) or 'none'}")


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
