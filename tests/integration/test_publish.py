"""Publishing from any producer, on real Kafka 4.1 and Postgres: ``sessionstream publish`` and
the worker's ``POST /api/v1/events`` each reject a missing required field, a wrong type, an
unknown topic, a body that is not JSON and an oversized batch with a clear message and publish
nothing; a valid batch is published exactly once under retries; the HTTP endpoint needs its
bearer token when one is configured; a published raw line reaches the ``sessions`` table.

Topics are shared with other tests, so every check counts the records of this run's unique
session ids only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from streams.producers.publish_validation import MAX_EVENTS
from streams.settings import bootstrap_of
from streams.tail import tail
from tests.integration.pipeline_helpers import (
    CLI,
    assert_running,
    cli_env,
    log_tail,
    start_cli,
    stop_cli,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

LINES = "sessions.file-changes.v1"
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "claude" / "projects" / \
    "-home-dev-demo" / "streaming.jsonl"


def _line_events(session: str, count: int = 3) -> list[dict[str, Any]]:
    """The first ``count`` lines of a real Claude Code transcript, as a producer would send.

    Its API response ids are made this session's own: the same response under two session ids
    is a copy (a resume), which counts for one of them only."""
    tag = "".join(ch for ch in session if ch.isalnum())[-12:]
    lines = [line.replace('"msg_', f'"msg_{tag}').replace('"req_', f'"req_{tag}')
             for line in SAMPLE.read_text().splitlines()[:count]]
    offsets = [sum(len(x.encode()) + 1 for x in lines[:i]) for i in range(len(lines))]
    return [{"source": "claude-code", "session_id": session, "type": "file.line_appended",
             "occurred_at": "2026-03-02T09:00:00Z",
             "payload": {"path": f"/published/{session}.jsonl", "offset": offset,
                         "line_no": n + 1, "line": line, "mtime": "2026-03-02T09:00:00Z",
                         "agent_id": None, "file_kind": None}}
            for n, (offset, line) in enumerate(zip(offsets, lines, strict=True))]


def _bad_cases(session: str) -> dict[str, tuple[str, str, str]]:
    """name -> (topic, body, what the message must say)."""
    missing = _line_events(session, 2)
    del missing[1]["payload"]["path"]
    wrong = _line_events(session, 2)
    wrong[0]["payload"]["line_no"] = "first"
    many = _line_events(session, 1) * (MAX_EVENTS + 1)
    return {
        "missing field": (LINES, json.dumps(missing), "events[1].payload.path: Field required"),
        "wrong type": (LINES, json.dumps(wrong), "events[0].payload.line_no: Input should be"),
        "unknown topic": ("sessions.nope.v1", json.dumps(_line_events(session)),
                          "unknown topic 'sessions.nope.v1'"),
        "not JSON": (LINES, '{"source": "claude-code", "session_id": ', "body is not JSON"),
        "oversized batch": (LINES, json.dumps(many), f"over the limit of {MAX_EVENTS}"),
    }


async def _published(bootstrap: str, session: str) -> int:
    records = [r async for r in tail(bootstrap, LINES, from_beginning=True, follow=False,
                                     session_id=session, idle_s=1.5)]
    return len(records)


def _publish(env: dict[str, str], topic: str, data: str, *args: str
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "publish", "--topic", topic, "-", *args], env=env, input=data,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def env(stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "no-sources").mkdir()
    return cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                   SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                   SESSIONSTREAM_SOURCES=str(tmp_path / "no-sources"),
                   SESSIONSTREAM_METRICS_PORT="0", SESSIONSTREAM_API_PORT="0")


async def test_cli_rejects_bad_input_and_publishes_a_batch_once(env: dict[str, str]) -> None:
    bootstrap = bootstrap_of(env["SESSIONSTREAM_BROKER_URL"])
    session = f"published-cli-{uuid.uuid4().hex[:8]}"
    for name, (topic, data, needle) in _bad_cases(session).items():
        result = _publish(env, topic, data)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert needle in result.stderr, (name, result.stderr)
    dry = _publish(env, LINES, json.dumps(_line_events(session)), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == 3 and "nothing published" in dry.stderr
    assert await _published(bootstrap, session) == 0

    batch = "\n".join(json.dumps(e) for e in _line_events(session))  # JSON lines
    first = _publish(env, LINES, batch, "--idempotency-key", session)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"published 3 event(s) to {LINES}")
    retry = _publish(env, LINES, batch, "--idempotency-key", session)
    assert retry.returncode == 0 and "already published: 3 event(s)" in retry.stdout
    conflict = _publish(env, LINES, json.dumps(_line_events(session, 1)),
                        "--idempotency-key", session)
    assert conflict.returncode == 1 and "used for a different batch" in conflict.stderr
    assert await _published(bootstrap, session) == 3

    other = f"{session}-b"  # no key given: the content's digest is the key
    once, twice = (_publish(env, LINES, json.dumps(_line_events(other, 2))) for _ in range(2))
    assert once.stdout.startswith("published 2") and twice.stdout.startswith("already")
    assert await _published(bootstrap, other) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(client: httpx.AsyncClient, worker: subprocess.Popen[bytes],
                        log: Path) -> None:
    async def healthy() -> bool:
        assert_running(worker, log)
        return (await client.get("/api/v1/health")).status_code == 200

    await eventually(healthy, "the publish API to answer", timeout=180, interval=0.5,
                     ignoring=(httpx.TransportError,), detail=lambda: log_tail(log))


async def _session_row(dsn: str, session: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT id, prompts FROM sessions WHERE id = $1", session)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def test_http_endpoint_rejects_bad_input_and_publishes_a_batch_once(
    env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    bootstrap = bootstrap_of(env["SESSIONSTREAM_BROKER_URL"])
    session = f"published-http-{uuid.uuid4().hex[:8]}"
    port, token = _free_port(), uuid.uuid4().hex
    log = tmp_path / "run.log"
    worker = start_cli({**env, "SESSIONSTREAM_API_PORT": str(port),
                        "SESSIONSTREAM_API_TOKEN": token}, "run", log=log)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await _wait_healthy(client, worker, log)
            batch = json.dumps({"events": _line_events(session)})
            unauthorized = await client.post("/api/v1/events", params={"topic": LINES},
                                             content=batch)
            assert unauthorized.status_code == 401, unauthorized.text

            statuses = {"missing field": 422, "wrong type": 422, "unknown topic": 404,
                        "not JSON": 400, "oversized batch": 413}
            for name, (topic, data, needle) in _bad_cases(session).items():
                answer = await client.post("/api/v1/events", params={"topic": topic},
                                           content=data, headers=auth)
                assert answer.status_code == statuses[name], (name, answer.text)
                body = answer.json()
                assert needle in body["error"] + "\n".join(body["problems"]), (name, body)
            assert await _published(bootstrap, session) == 0

            retry_headers = {**auth, "Idempotency-Key": session}
            answers = [await client.post("/api/v1/events", params={"topic": LINES},
                                         content=batch, headers=retry_headers)
                       for _ in range(3)]
            assert [a.status_code for a in answers] == [201, 200, 200], answers[0].text
            assert answers[0].json()["published"] == 3
            assert answers[2].json()["already_published"] is True
        assert await _published(bootstrap, session) == 3
        row = await eventually(lambda: _session_row(pg_dsn, session),
                               "the published lines in Postgres", timeout=120, interval=1,
                               detail=lambda: log_tail(log))
        assert row["prompts"] >= 1
    finally:
        print(log.read_text()[-5000:])  # shown when the test fails
        stop_cli(worker)
