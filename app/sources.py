"""Which producers a worker runs and what each one reads, from the sources registry.

A source root is given as ``PATH`` or ``KIND=PATH`` (``--source``, ``SESSIONSTREAM_SOURCES``).
``KIND`` is a producer's ``source`` name (:func:`streams.sources.source_names`); a bare path is
given to the first kind (by ``rank``) whose
:meth:`~streams.producers.base.FileProducer.claims` accepts it, else to the ``fallback`` source
(Claude Code's). With no roots at all, every kind watches its own default paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from streams.errors import ConfigError
from streams.producers.base import FileProducer, Publish
from streams.settings import Settings
from streams.sources import fallback_source, producer_classes

__all__ = ["PRODUCERS", "build_producers", "split_roots"]

PRODUCERS: dict[str, type[FileProducer]] = {cls.source: cls for cls in producer_classes()}
DEFAULT_KIND = fallback_source()


def split_roots(specs: list[Path] | list[str]) -> dict[str, list[Path]]:
    """``{kind: [roots]}`` for ``PATH`` / ``KIND=PATH`` specs; ``ConfigError`` on an unknown
    kind."""
    roots: dict[str, list[Path]] = {}
    for spec in specs:
        text = str(spec)
        kind, sep, rest = text.partition("=")
        if sep and "/" not in kind:
            if kind not in PRODUCERS:
                raise ConfigError(f"unknown source kind {kind!r} in {text!r}; "
                                  f"known: {', '.join(PRODUCERS)}")
            path = Path(rest).expanduser()
        else:
            path = Path(text).expanduser()
            kind = _guess_kind(path)
        roots.setdefault(kind, []).append(path)
    return roots


def _guess_kind(path: Path) -> str:
    for kind, cls in PRODUCERS.items():
        if kind != DEFAULT_KIND and cls.claims(path):
            return kind
    return DEFAULT_KIND


def build_producers(settings: Settings, sources: list[Path], publish: Publish
                    ) -> list[FileProducer]:
    """One producer per kind with roots (explicit ones, or every kind's defaults)."""
    explicit = split_roots(sources)
    chosen = explicit or {kind: cls.default_roots(os.environ) for kind, cls in PRODUCERS.items()}
    return [PRODUCERS[kind](roots=roots,
                            checkpoint_path=settings.state_dir / "checkpoints" / f"{kind}.json",
                            publish=publish)
            for kind, roots in chosen.items() if roots]
