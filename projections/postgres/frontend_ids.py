"""The uuids of the frontend tables: name-based (uuid5) under two fixed namespaces.

A frontend keys its ``sessions`` and ``projects`` by uuid, while sessionstream keys a session by
``(source, session id)`` and a project by its directory. Both are mapped with ``uuid.uuid5``, so
an id depends on nothing but its input: the same on every replay, worker and machine, and
computable by anyone holding the input (see ``docs/frontend-tables.md`` for a one-liner).

- session: ``uuid5(SESSION_NAMESPACE, "<source>:<session id>")``, e.g.
  ``"session-skill:shop/checkout-flow"`` (a source name never holds ``:``);
- project: ``uuid5(PROJECT_NAMESPACE, normalized path)``, the path normalized lexically by
  :func:`normalize_path` (``posixpath.normpath``: ``/code/shop/``, ``/code//shop`` and
  ``/code/./shop`` are one project); symlinks are not resolved, the path is not required to
  exist where the id is computed.

The namespaces are part of the contract: changing one changes every id a frontend holds.
"""

from __future__ import annotations

import posixpath
import uuid

__all__ = ["PROJECT_NAMESPACE", "SESSION_NAMESPACE", "normalize_path", "project_uuid",
           "session_uuid"]

SESSION_NAMESPACE = uuid.UUID("aec987fa-1fa5-46ba-b162-53af8ef0e334")
PROJECT_NAMESPACE = uuid.UUID("82af615b-303b-4aee-acce-19809cef2f1d")


def session_uuid(source: str, session_id: str) -> uuid.UUID:
    """The frontend id of the session ``session_id`` of ``source``."""
    return uuid.uuid5(SESSION_NAMESPACE, f"{source}:{session_id}")


def normalize_path(path: str) -> str:
    """``path`` without redundant separators, ``.`` and ``..`` parts or a trailing ``/``."""
    return posixpath.normpath(path)


def project_uuid(path: str) -> uuid.UUID:
    """The frontend id of the project whose directory is ``path`` (normalized first)."""
    return uuid.uuid5(PROJECT_NAMESPACE, normalize_path(path))
