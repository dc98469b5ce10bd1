"""``SessionTables`` and the agent-kind-neutral events, against the real Postgres of the stack.

Session state: the newest report of a facet replaces its earlier ones, and the facets merge
per field, newest first, whatever the order of arrival. Artifacts keep their newest content and
every distinct revision. A rewind removes the messages from its target on, but not those after
it in the same batch. Removing an artifact file does not close the session.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from projections.base import Record
from projections.postgres.session_tables import SessionTables
from schemas.events import (
    ArtifactDescribed,
    ArtifactRevised,
    AssistantMessage,
    EventPayload,
    SessionEvent,
    SessionFileRemoved,
    SessionRewound,
    SessionStateReported,
    UsageReported,
    UserPrompted,
)
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(payload: EventPayload, minute: int, session: str = "proj/slug") -> SessionEvent:
    return SessionEvent(event_id=f"state-{next(_ids):08d}", source="session-skill",
                        type=payload.kind, occurred_at=at(minute), session_id=session,
                        payload=payload)


def records(events: list[SessionEvent]) -> list[Record]:
    return [Record(SESSION_EVENTS.name, 0, i, e) for i, e in enumerate(events)]


async def project(dsn: str, events: list[SessionEvent]) -> None:
    tables = SessionTables(dsn)
    await tables.start()
    try:
        await tables.reset()
        await tables.apply_batch(records(events))
    finally:
        await tables.stop()


async def session_row(dsn: str, session: str = "proj/slug") -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM sessions WHERE id = $1", session)
    finally:
        await conn.close()
    assert row is not None
    return row


STATE_EVENTS = [
    event(SessionStateReported(facet="state.json", updated_at=at(1), slug="slug",
                               status="active", session_type="skill", project="proj",
                               working_dir="/p", session_dir="/p/agents/sessions/slug",
                               current_task="t1", checkpoint={"taskId": "t1", "passed": True}),
          1),
    event(SessionStateReported(facet="plan.json", updated_at=at(2), progress_done=1,
                               progress_total=4, current_task="t2"), 2),
    event(SessionStateReported(facet="spec.md", updated_at=at(3), title="Audit the agents"), 3),
    # an older state.json revision arriving late must not win
    event(SessionStateReported(facet="state.json", updated_at=at(0), slug="slug",
                               status="draft"), 4),
    # the newest report of a facet replaces that facet's earlier ones (no current task now)
    event(SessionStateReported(facet="state.json", updated_at=at(5), slug="slug",
                               status="completed", session_type="skill", project="proj",
                               working_dir="/p", session_dir="/p/agents/sessions/slug",
                               checkpoint={"taskId": "t4", "passed": True}), 5),
]


async def test_state_merges_per_field_newest_first_in_any_order(pg_dsn: str) -> None:
    expected = {"slug": "slug", "title": "Audit the agents", "status": "completed",
                "session_type": "skill", "project": "proj", "working_dir": "/p",
                "session_dir": "/p/agents/sessions/slug", "current_task": "t2",
                "progress_done": 1, "progress_total": 4}
    for order in (STATE_EVENTS, list(reversed(STATE_EVENTS))):
        await project(pg_dsn, order)
        row = await session_row(pg_dsn)
        assert {k: row[k] for k in expected} == expected
        assert row["checkpoint"] is not None and '"taskId": "t4"' in row["checkpoint"]


def revision(text: str, minute: int, revision_label: str = "current") -> SessionEvent:
    return event(ArtifactRevised(
        path="/b/c1/task.md", name="task.md", revision=revision_label, updated_at=at(minute),
        content=text, content_sha256=hashlib.sha256(text.encode()).hexdigest(), size=len(text)),
        minute, session="c1")


async def test_artifacts_keep_newest_content_and_every_revision(pg_dsn: str) -> None:
    events = [
        revision("- [ ] a", 1, "resolved"), revision("- [x] a", 2, "resolved.1"),
        revision("- [x] a\n- [ ] b", 3),
        event(ArtifactDescribed(path="/b/c1/task.md", artifact_type="ARTIFACT_TYPE_TASK",
                                summary="the task list", version="2", updated_at=at(3)),
              3, session="c1"),
        revision("- [x] a", 2, "resolved.1"),  # the same revision seen again
        revision("- [x] a\n- [x] b", 5, "resolved.2"),  # a later snapshot: not the current
        event(SessionFileRemoved(path="/b/c1/task.md.resolved", file_kind="artifact"), 4,
              session="c1"),
    ]
    for order in (events, list(reversed(events))):
        await project(pg_dsn, order)
        conn = await asyncpg.connect(pg_dsn)
        try:
            art = await conn.fetchrow("SELECT * FROM artifacts WHERE session_id = 'c1'")
            revs = await conn.fetch("SELECT revision FROM artifact_revisions "
                                    "WHERE session_id = 'c1' ORDER BY updated_at")
        finally:
            await conn.close()
        assert art["content"] == "- [x] a\n- [ ] b"
        assert (art["artifact_type"], art["summary"], art["version"]) == (
            "ARTIFACT_TYPE_TASK", "the task list", "2")
        assert [r["revision"] for r in revs] == ["resolved", "resolved.1", "current",
                                                 "resolved.2"]
        row = await session_row(pg_dsn, "c1")
        assert row["artifacts"] == 1
        assert row["status"] == "active" and row["ended_at"] is None


async def test_rewind_removes_messages_from_its_target_but_keeps_billed_usage(
        pg_dsn: str) -> None:
    def prompt(uuid: str, minute: int) -> SessionEvent:
        return event(UserPrompted(line_uuid=uuid, text=uuid, timestamp=at(minute)), minute,
                     session="g1")

    def reply(key: str, minute: int) -> list[SessionEvent]:
        return [event(AssistantMessage(message_key=key, line_uuid=key, text=key,
                                       timestamp=at(minute)), minute, session="g1"),
                event(UsageReported(message_key=key, model="gemini-2.5-pro", input_tokens=10,
                                    output_tokens=5, timestamp=at(minute)), minute,
                      session="g1")]

    parent_later = event(UserPrompted(line_uuid="p9", text="p9", timestamp=at(4)), 4,
                         session="g1")
    sub_prompt = event(UserPrompted(line_uuid="s1", text="s1", agent_id="sub",
                                    timestamp=at(3)), 3, session="g1")
    events = [prompt("u1", 1), *reply("m1", 2), prompt("u2", 3), *reply("m2", 4),
              event(SessionRewound(to_message_key="u2"), 5, session="g1"),
              prompt("u3", 6), *reply("m3", 7),
              # a sub-agent's rewind removes its own messages only, not its parent's
              sub_prompt, parent_later,
              event(SessionRewound(to_message_key="s1", agent_id="sub"), 8, session="g1")]
    await project(pg_dsn, events)
    conn = await asyncpg.connect(pg_dsn)
    try:
        keys = [r["message_key"] for r in await conn.fetch(
            "SELECT message_key FROM messages WHERE session_id = 'g1' ORDER BY at")]
    finally:
        await conn.close()
    assert keys == ["user:u1", "m1", "user:p9", "user:u3", "m3"]
    row = await session_row(pg_dsn, "g1")
    assert (row["prompts"], row["assistant_messages"]) == (3, 2)
    assert row["total_tokens"] == 45  # three responses were billed, the rewound one too
