"""The rows of agent-kept session state and artifacts, each beside its upsert.

Agent-kept state (``session.state``) is stored per facet (``session_state``): a facet's newest
report, by ``(updated_at, event_id)``, replaces its earlier ones; the session row merges the
facets per field, newest first (``RECOMPUTE`` in :mod:`projections.postgres.session_schema`),
so every kind of agent lands in the same columns. ``artifacts`` holds each artifact's newest
``current`` content (a snapshot such as ``resolved.2`` only until the file itself is seen) and
its description; ``artifact_revisions`` every distinct content.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

__all__ = ["STATE_FIELDS", "STATE_STATEMENTS", "ArtifactRow", "DescribedRow", "RevisionRow",
           "StateRow"]

# The fields of a SessionStateReported a facet stores (and the session row may take).
STATE_FIELDS = {"slug", "title", "status", "session_type", "project", "working_dir",
                "session_dir", "current_task", "checkpoint", "progress_done", "progress_total"}


class StateRow(NamedTuple):
    session_id: str
    facet: str
    updated_at: datetime
    event_id: str
    fields: str  # a JSON object of STATE_FIELDS


UPSERT_STATE = """
INSERT INTO session_state (session_id, facet, updated_at, event_id, fields)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (session_id, facet) DO UPDATE SET
    updated_at = EXCLUDED.updated_at, event_id = EXCLUDED.event_id, fields = EXCLUDED.fields
WHERE (EXCLUDED.updated_at, EXCLUDED.event_id) > (session_state.updated_at, session_state.event_id)
"""


class ArtifactRow(NamedTuple):
    session_id: str
    path: str
    name: str
    content: str
    content_sha256: str
    truncated: bool
    size: int
    updated_at: datetime
    artifact_type: str | None
    summary: str | None
    version: str | None
    revision: str


UPSERT_ARTIFACT = """
INSERT INTO artifacts (session_id, path, name, content, content_sha256, truncated, size,
                       updated_at, artifact_type, summary, version, revision)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (session_id, path) DO UPDATE SET
    name = EXCLUDED.name, content = EXCLUDED.content, content_sha256 = EXCLUDED.content_sha256,
    truncated = EXCLUDED.truncated, size = EXCLUDED.size, updated_at = EXCLUDED.updated_at,
    revision = EXCLUDED.revision,
    artifact_type = coalesce(artifacts.artifact_type, EXCLUDED.artifact_type),
    summary = coalesce(artifacts.summary, EXCLUDED.summary),
    version = coalesce(artifacts.version, EXCLUDED.version)
WHERE artifacts.updated_at IS NULL
   OR (EXCLUDED.revision = 'current', EXCLUDED.updated_at, EXCLUDED.content_sha256)
      > (artifacts.revision = 'current', artifacts.updated_at, artifacts.content_sha256)
"""


class RevisionRow(NamedTuple):
    session_id: str
    path: str
    content_sha256: str
    revision: str
    updated_at: datetime
    size: int
    content: str
    truncated: bool


UPSERT_REVISION = """
INSERT INTO artifact_revisions (session_id, path, content_sha256, revision, updated_at, size,
                                content, truncated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (session_id, path, content_sha256) DO UPDATE SET
    revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.updated_at, EXCLUDED.revision) < (artifact_revisions.updated_at,
                                                  artifact_revisions.revision)
"""


class DescribedRow(NamedTuple):
    session_id: str
    path: str
    name: str
    artifact_type: str | None
    summary: str | None
    version: str | None
    described_at: datetime


UPSERT_DESCRIBED = """
INSERT INTO artifacts (session_id, path, name, artifact_type, summary, version, described_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (session_id, path) DO UPDATE SET
    artifact_type = EXCLUDED.artifact_type, summary = EXCLUDED.summary,
    version = EXCLUDED.version, described_at = EXCLUDED.described_at
WHERE artifacts.described_at IS NULL OR EXCLUDED.described_at >= artifacts.described_at
"""

STATE_STATEMENTS: dict[type[tuple[object, ...]], str] = {
    StateRow: UPSERT_STATE, ArtifactRow: UPSERT_ARTIFACT, RevisionRow: UPSERT_REVISION,
    DescribedRow: UPSERT_DESCRIBED,
}
