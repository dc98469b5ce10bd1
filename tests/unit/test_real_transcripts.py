"""Real session transcripts, published under a permissive license, through the parsers.

Each file under tests/real/<source>/ was written by the agent itself in real use and copied
unchanged from a public repository (see that folder's PROVENANCE.md). Every line is fed to the
source's parser exactly as the producer would publish it; what is checked:

- no line raises ``InvalidEvent``;
- no line becomes ``line.unknown``: every event type in these files is one the format notes
  (docs/sources/<source>.md) say is understood, mapped or deliberately silent;
- the per-session token total the projection would keep (largest ``UsageReported`` per
  ``(session, message_key)``, input + output + cache read + cache creation 5m + 1h) equals an
  oracle computed here straight from the raw JSON by the documented semantics;
- for Copilot CLI also the tool calls and their failures, counted from the raw events.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.copilot_cli import decide as decide_copilot
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers.copilot_cli import CopilotCliProducer

pytestmark = pytest.mark.unit

REAL = Path(__file__).resolve().parents[1] / "real"
MTIME = datetime(2026, 3, 20, 22, 0, tzinfo=UTC)

COPILOT_SESSION = "07c40cd0-ff51-4d6e-bdcd-ac2f90877203"
COPILOT_EVENTS = (REAL / "copilot-cli" / "agent-engram-break-down-feature-007" / "session-state"
                  / COPILOT_SESSION / "events.jsonl")


async def _unused_publish(events: list[FileChanged]) -> None:
    raise AssertionError("describe() only")


COPILOT = CopilotCliProducer([REAL / "copilot-cli"], Path("unused-checkpoint.json"),
                             _unused_publish)


def _require(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real transcript {path.relative_to(REAL)} is not in this checkout")
    return path


def _copilot_file_events(path: Path) -> list[FileChanged]:
    """One ``file.line`` per non-blank line, as ``CopilotCliProducer`` tails the log."""
    assert COPILOT.matches(path) and not COPILOT.snapshot(path)
    text = path.read_text(encoding="utf-8")
    session_id, kind, agent_id = COPILOT.describe(path, text.partition("\n")[0])
    events, offset = [], 0
    for line_no, raw in enumerate(text.split("\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw,
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("copilot-cli", session_id, line))
        offset += len(raw.encode()) + 1
    return events


def _decide_every_line(events: list[FileChanged], decide) -> list[SessionEvent]:
    out: list[SessionEvent] = []
    for event in events:
        try:
            out.extend(decide(event))
        except InvalidEvent as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"line {event.payload.line_no} raised InvalidEvent: {exc}")
    return out


def _kept_totals(events: list[SessionEvent]) -> dict[str, int]:
    """Per session: the sum over message keys of the largest usage seen for that key."""
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if isinstance(p, UsageReported):
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    totals: dict[str, int] = defaultdict(int)
    for (session, _), usage in best.items():
        totals[session] += (usage.input_tokens + usage.output_tokens + usage.cache_read_tokens
                            + usage.cache_creation_5m_tokens + usage.cache_creation_1h_tokens)
    return dict(totals)


def _raw_records(path: Path) -> list[dict]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()
            if raw.strip()]


# --- GitHub Copilot CLI ---------------------------------------------------------------------


def _copilot_token_oracle(path: Path) -> tuple[int, int]:
    """(total tokens, number of (shutdown, model) usages), from the raw log.

    docs/sources/copilot-cli.md: usage is on disk only in ``session.shutdown.data.modelMetrics
    [<model>].usage``, one shutdown per CLI process lifetime, every lifetime adding up;
    ``inputTokens`` includes ``cacheReadTokens`` and ``cacheWriteTokens``; fresh input is the
    rest, never below 0; ``outputTokens`` includes reasoning. ``agentMetrics`` and the replies'
    ``outputTokens`` repeat those totals and are not counted. A lifetime without a shutdown
    reports nothing.
    """
    total = usages = 0
    for record in _raw_records(path):
        if record.get("type") != "session.shutdown":
            continue
        for metric in (record.get("data") or {}).get("modelMetrics", {}).values():
            u = metric.get("usage") or {}
            read, write = u.get("cacheReadTokens", 0), u.get("cacheWriteTokens", 0)
            fresh = max(0, u.get("inputTokens", 0) - read - write)
            total += fresh + read + write + u.get("outputTokens", 0)
            usages += 1
    return total, usages


def _copilot_raw_tool_calls(path: Path) -> tuple[set[str], set[str]]:
    """(every toolCallId requested or started, those whose completion has success false)."""
    ids: set[str] = set()
    failed: set[str] = set()
    for record in _raw_records(path):
        data = record.get("data") or {}
        if record.get("type") == "assistant.message":
            ids.update(r["toolCallId"] for r in data.get("toolRequests") or [])
        elif record.get("type") == "tool.execution_start":
            ids.add(data["toolCallId"])
        elif record.get("type") == "tool.execution_complete" and data.get("success") is False:
            failed.add(data["toolCallId"])
    return ids, failed


@pytest.fixture(scope="module")
def copilot_events() -> list[SessionEvent]:
    return _decide_every_line(_copilot_file_events(_require(COPILOT_EVENTS)), decide_copilot)


def test_copilot_real_session_parses_without_unknown_lines(copilot_events):
    records = _raw_records(COPILOT_EVENTS)
    assert len(_copilot_file_events(COPILOT_EVENTS)) == len(records) == 592
    assert {e.session_id for e in copilot_events} == {COPILOT_SESSION}
    # Every type in this log is named in the format notes: mapped (session.start,
    # session.model_change, user.message, assistant.message, tool.execution_*, notices) or
    # bookkeeping (turn boundaries, hooks, mode changes); none may fall through to unknown.
    unknown = sorted({e.payload.line_type for e in copilot_events if e.type == "line.unknown"})
    assert unknown == []


def test_copilot_real_session_token_total_equals_the_raw_oracle(copilot_events):
    want, usages = _copilot_token_oracle(COPILOT_EVENTS)
    # This log was committed while its CLI process was still alive: no shutdown, so no usage.
    assert usages == 0
    got = _kept_totals(copilot_events)
    assert got.get(COPILOT_SESSION, 0) == want == 0
    assert [e for e in copilot_events if e.type == "usage.reported"] == []


def test_copilot_real_session_tool_calls_match_the_raw_events(copilot_events):
    ids, failed = _copilot_raw_tool_calls(COPILOT_EVENTS)
    called = {e.payload.tool_use_id for e in copilot_events if e.type == "tool.called"}
    resulted = {e.payload.tool_use_id: e.payload.is_error
                for e in copilot_events if e.type == "tool.resulted"}
    assert called == ids and len(ids) == 86
    assert set(resulted) == ids
    assert {k for k, is_error in resulted.items() if is_error} == failed
