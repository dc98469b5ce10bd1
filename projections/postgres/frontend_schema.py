"""The frontend tables' schema: the two tables a frontend reads, their bookkeeping, the SQL.

Everything lives in one Postgres schema of its own (``SESSIONSTREAM_FRONTEND_SCHEMA``, default
``frontend``), because ``public`` already holds sessionstream's own ``sessions``. A frontend
connects with ``search_path=<schema>`` and reads two tables whose columns are exactly:

- ``sessions``: ``id`` uuid, ``session_slug``, ``title``, ``project_id`` uuid (references
  ``projects``), ``status``, ``session_type``, ``working_dir``, ``session_dir`` (text);
- ``projects``: ``project_id`` uuid, plus ``name`` (the directory's name) and ``path`` (the
  normalized directory), text.

Bookkeeping sits beside them, in tables a frontend need not read: ``session_activity`` (per
session: its ``(source, session_id)``, first and last event, and when and why it closed; the
recency to order by) and ``session_facets`` (the agent-kept state per facet, merged per field,
newest first, exactly as :data:`~projections.postgres.session_schema.RECOMPUTE` merges
``session_state``). The positions stay in ``public.projection_offsets`` with every other
projection's. :class:`FrontendSchema` renders the DDL and statements for one schema name, which
the settings have checked to be a plain identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrontendSchema"]


@dataclass(frozen=True)
class FrontendSchema:
    """The DDL and statements of the frontend tables in the Postgres schema ``name``."""

    name: str

    @property
    def q(self) -> str:
        """The schema, quoted, to qualify every table with."""
        return f'"{self.name}"'

    @property
    def tables(self) -> list[str]:
        """Every table, qualified, in an order ``TRUNCATE`` accepts together."""
        return [f"{self.q}.{t}" for t in ("sessions", "projects", "session_activity",
                                          "session_facets")]

    @property
    def ddl(self) -> list[str]:
        s = self.q
        return [
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"""CREATE TABLE IF NOT EXISTS {s}.projects (
                project_id uuid PRIMARY KEY, name text, path text NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {s}.sessions (
                id uuid PRIMARY KEY, session_slug text, title text,
                project_id uuid REFERENCES {s}.projects (project_id), status text NOT NULL,
                session_type text NOT NULL, working_dir text, session_dir text)""",
            f"CREATE INDEX IF NOT EXISTS sessions_project_id ON {s}.sessions (project_id)",
            f"""CREATE TABLE IF NOT EXISTS {s}.session_activity (
                id uuid PRIMARY KEY, source text NOT NULL, session_id text NOT NULL,
                started_at timestamptz NOT NULL, last_activity_at timestamptz NOT NULL,
                ended_at timestamptz, closed_reason text, UNIQUE (source, session_id))""",
            f"""CREATE INDEX IF NOT EXISTS session_activity_open
                ON {s}.session_activity (last_activity_at) WHERE ended_at IS NULL""",
            f"""CREATE TABLE IF NOT EXISTS {s}.session_facets (
                id uuid NOT NULL, facet text NOT NULL, updated_at timestamptz NOT NULL,
                event_id text NOT NULL, fields jsonb NOT NULL, PRIMARY KEY (id, facet))""",
        ]

    @property
    def upsert_activity(self) -> str:
        """$1 id, $2 source, $3 session id, $4 first, $5 last event, $6 ended_at (the main
        file removed). A session closed for inactivity reopens on a later event, as in
        :data:`~projections.postgres.session_rows.UPSERT_SESSION`."""
        reopens = ("a.closed_reason = 'inactive' AND EXCLUDED.ended_at IS NULL"
                   " AND EXCLUDED.last_activity_at > a.ended_at")
        return f"""
        INSERT INTO {self.q}.session_activity AS a (id, source, session_id, started_at,
                                                    last_activity_at, ended_at, closed_reason)
        VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6::timestamptz IS NULL THEN NULL
                                             ELSE 'removed' END)
        ON CONFLICT (id) DO UPDATE SET
            started_at = least(a.started_at, EXCLUDED.started_at),
            last_activity_at = greatest(a.last_activity_at, EXCLUDED.last_activity_at),
            ended_at = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN EXCLUDED.ended_at
                            WHEN {reopens} THEN NULL ELSE a.ended_at END,
            closed_reason = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN 'removed'
                                 WHEN {reopens} THEN NULL ELSE a.closed_reason END"""

    @property
    def upsert_facet(self) -> str:
        """$1 id, $2 facet, $3 updated_at, $4 event id, $5 fields (JSON): a facet's newest
        report, by ``(updated_at, event_id)``, replaces its earlier ones."""
        return f"""
        INSERT INTO {self.q}.session_facets AS f (id, facet, updated_at, event_id, fields)
        VALUES ($1, $2, $3, $4, $5::jsonb)
        ON CONFLICT (id, facet) DO UPDATE SET updated_at = EXCLUDED.updated_at,
            event_id = EXCLUDED.event_id, fields = EXCLUDED.fields
        WHERE (EXCLUDED.updated_at, EXCLUDED.event_id) > (f.updated_at, f.event_id)"""

    @property
    def merged(self) -> str:
        """Per session of $1 (uuid[]): ``ended_at``, the project its row names now
        (``old_project``) and ``state``, the facets merged per field, newest first."""
        return f"""
        SELECT a.id, a.ended_at, s.project_id AS old_project,
               coalesce((SELECT jsonb_object_agg(z.key, z.value) FROM (
                   SELECT DISTINCT ON (e.key) e.key, e.value
                   FROM {self.q}.session_facets x, jsonb_each(x.fields) e
                   WHERE x.id = a.id AND e.value <> 'null'::jsonb
                   ORDER BY e.key, x.updated_at DESC, x.facet) z), '{{}}') AS state
        FROM {self.q}.session_activity a LEFT JOIN {self.q}.sessions s ON s.id = a.id
        WHERE a.id = ANY($1::uuid[]) ORDER BY a.id"""

    @property
    def upsert_project(self) -> str:
        """$1 project_id, $2 name, $3 path: both follow from the id's path, so never change."""
        return f"""
        INSERT INTO {self.q}.projects (project_id, name, path) VALUES ($1, $2, $3)
        ON CONFLICT (project_id) DO NOTHING"""

    @property
    def upsert_session(self) -> str:
        """The frontend's columns, in order; a row that would not change is not written."""
        cols = ("session_slug", "title", "project_id", "status", "session_type", "working_dir",
                "session_dir")
        return f"""
        INSERT INTO {self.q}.sessions AS s (id, {", ".join(cols)})
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in cols)}
        WHERE ({", ".join(f"s.{c}" for c in cols)})
              IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in cols)})"""

    @property
    def delete_orphan_projects(self) -> str:
        """Of the projects $1 (uuid[]), those no session names any more."""
        return f"""
        DELETE FROM {self.q}.projects p WHERE p.project_id = ANY($1::uuid[])
        AND NOT EXISTS (SELECT 1 FROM {self.q}.sessions s WHERE s.project_id = p.project_id)"""

    @property
    def close_idle(self) -> str:
        """Close every open session quiet since before $1: ``ended_at`` its last activity,
        the reason ``inactive`` (as :data:`~projections.postgres.session_rows.CLOSE_IDLE`).
        Returns ``id`` and ``session_id``."""
        return f"""
        UPDATE {self.q}.session_activity SET ended_at = last_activity_at,
            closed_reason = 'inactive'
        WHERE ended_at IS NULL AND last_activity_at < $1
        RETURNING id, session_id"""
