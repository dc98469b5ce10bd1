"""The Amp source: ``AmpProducer`` (roots, names, records of a rewritten thread document) and
``agents.parsers.amp.decide`` (every record kind and trap), on the hand-written samples in
tests/samples/amp.

Events are built the way the base builds them from records, and the projection's rule is
replayed in miniature (the largest usage per ``(session, message_key)``), so the totals checked
against the sample's hand-computed ``expected.json`` are what the tables will hold.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.parsers.amp import decide
from agents.parsers.registry import registered
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers.amp import AmpProducer, amp_records
from streams.producers.records import Record
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "amp"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
THREADS = SAMPLES / EXPECTED["root"]
CLAUDE_ID, GPT_ID = EXPECTED["ids"]
CLAUDE = THREADS / f"{CLAUDE_ID}.json"
GPT = THREADS / f"{GPT_ID}.json"
MTIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def _unused(events: list[FileChanged]) -> None:
    raise AssertionError("not published")


PRODUCER = AmpProducer([THREADS], Path("unused-checkpoint.json"), _unused)


def events_of(records: list[Record], path: Path = CLAUDE) -> list[FileChanged]:
    """The line events the base publishes for ``records`` of ``path``."""
    return [file_line_event("amp", r.session_id, FileLine(
        path=str(path), offset=0, line_no=n, line=r.text, mtime=MTIME,
        file_kind=r.file_kind, agent_id=r.agent_id)) for n, r in enumerate(records, 1)]


def decided(path: Path) -> list[SessionEvent]:
    records, _ = PRODUCER.records(path, None)
    return [out for event in events_of(records, path) for out in decide(event)]


def kept_usage(events: list[SessionEvent]) -> dict[tuple[str, str], UsageReported]:
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if isinstance(p, UsageReported):
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    return best


def totals(events: list[SessionEvent]) -> dict[str, Any]:
    """The sessions-row columns the sample's expected.json lists, from the events."""
    usage = kept_usage(events).values()
    payloads = [e.payload for e in events]
    errors = {p.tool_use_id for p in payloads if p.kind == "tool.resulted" and p.is_error}
    return {
        "input_tokens": sum(u.input_tokens for u in usage),
        "output_tokens": sum(u.output_tokens for u in usage),
        "cache_read_tokens": sum(u.cache_read_tokens for u in usage),
        "cache_creation_tokens": sum(u.cache_creation_5m_tokens for u in usage),
        "total_tokens": sum(u.total for u in usage),
        "tool_calls": len({p.tool_use_id for p in payloads if p.kind == "tool.called"}),
        "tool_errors": len(errors),
        "prompts": len({p.line_uuid for p in payloads
                        if p.kind == "user.prompted" and not p.is_meta}),
        "files_touched": len({p.path for p in payloads if p.kind == "file.touched"}),
        "subagents": len({p.child_agent_id for p in payloads if p.kind == "subagent.linked"}),
        "unpriced_models": [],
    }


# --- producer -------------------------------------------------------------------------------


def test_default_roots_follow_xdg_data_home_and_the_home_of_each_os():
    assert AmpProducer.default_roots({"XDG_DATA_HOME": "/xdg", "HOME": "/home/me"}) == [
        Path("/xdg/amp/threads")]
    assert AmpProducer.default_roots({"HOME": "/home/me"}) == [
        Path("/home/me/.local/share/amp/threads")]
    assert AmpProducer.default_roots({"USERPROFILE": "C:/Users/me"}) == [
        Path("C:/Users/me/.local/share/amp/threads")]


def test_matches_thread_documents_only():
    assert PRODUCER.matches(CLAUDE)
    for other in ("T-.json", "T-abc.json.tmp", "settings.json", "thread.json", "T-x.jsonl"):
        assert not PRODUCER.matches(THREADS / other), other
    assert PRODUCER.describe(CLAUDE, None) == (CLAUDE_ID, "main", None)


def test_claims_a_threads_folder_or_its_parent(tmp_path):
    assert AmpProducer.claims(THREADS)
    assert AmpProducer.claims(THREADS.parent)
    assert not AmpProducer.claims(tmp_path)
    assert not AmpProducer.claims(tmp_path / "missing")


def test_prune_walks_only_the_threads_folder():
    names = ["threads", "logs", "cache"]
    PRODUCER.prune(THREADS.parent, names)
    assert names == ["threads"]


def test_records_split_the_document_and_a_cursor_keeps_what_was_read():
    records, cursor = PRODUCER.records(CLAUDE, None)
    keys = [r.key for r in records]
    assert keys[0] == "thread" and keys[1:12] == [f"message:{n}" for n in range(11)]
    assert keys[12:] == ["ledger:evt-0a1b2c3d", "ledger:evt-1b2c3d4e", "ledger:evt-2c3d4e5f"]
    assert {r.session_id for r in records} == {CLAUDE_ID}
    assert records[2].at == datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    assert PRODUCER.records(CLAUDE, cursor) == ([], cursor)


def test_a_rewrite_republishes_only_the_changed_messages(tmp_path):
    document = json.loads(CLAUDE.read_text())
    _, cursor = changed_read(document)
    document["messages"][7]["content"][0]["text"] += " Done."
    document["messages"].append({"role": "user", "messageId": 11,
                                 "content": [{"type": "text", "text": "One more."}]})
    fresh, _ = changed_read(document, cursor)
    assert [r.key for r in fresh] == ["message:7", "message:11"]


def changed_read(document: dict, cursor: str | None = None) -> tuple[list[Record], str]:
    from streams.producers.records import changed
    return changed(amp_records(document, "fallback"), cursor)


def test_records_of_a_half_written_thread_raise_value_error(tmp_path):
    broken = tmp_path / "T-0000aaaa.json"
    broken.write_text('{"id": "T-0000aaaa", "messages": [')
    with pytest.raises(ValueError):
        PRODUCER.records(broken, None)


async def test_scan_publishes_records_then_only_changes(tmp_path):
    root = tmp_path / "threads"
    shutil.copytree(THREADS, root)
    collector = Collector()
    producer = AmpProducer([root], tmp_path / "state" / "amp.json", collector)
    assert await producer.scan_once() == 15 + 4
    assert {e.session_id for e in collector.events} == {CLAUDE_ID, GPT_ID}
    assert await producer.scan_once() == 0
    path = root / CLAUDE.name
    document = json.loads(path.read_text())
    document["title"] = "Fix the flaky login tests"
    path.write_text(json.dumps(document))
    assert await producer.scan_once() == 1
    assert json.loads(collector.events[-1].payload.line)["kind"] == "thread"


# --- parser ---------------------------------------------------------------------------------


def test_registered_for_amp():
    assert registered()["amp"] is decide


@pytest.mark.parametrize("path", [CLAUDE, GPT], ids=["claude", "gpt"])
def test_session_totals_equal_the_hand_computed_ones(path):
    events = decided(path)
    session = path.stem
    assert {e.session_id for e in events} == {session}
    assert totals(events) == EXPECTED["sessions"][session]


def test_ledger_events_land_on_their_message_key_and_the_message_wins():
    events = decided(CLAUDE)
    reports = [e.payload for e in events if isinstance(e.payload, UsageReported)]
    first = [r for r in reports if r.message_key == f"{CLAUDE_ID}:1"]
    assert sorted(r.total for r in first) == [192, 4192]  # the ledger's copy, the message's
    kept = kept_usage(events)[(CLAUDE_ID, f"{CLAUDE_ID}:1")]
    assert (kept.input_tokens, kept.cache_creation_5m_tokens) == (12, 4000)
    title = kept_usage(events)[(CLAUDE_ID, f"{CLAUDE_ID}:ledger:evt-2c3d4e5f")]
    assert (title.model, title.total) == ("claude-haiku-4-5-20251001", 312)


def test_gpt_cache_creation_is_reported_as_fresh_input():
    usage = [e.payload for e in decided(GPT) if isinstance(e.payload, UsageReported)]
    assert [(u.model, u.input_tokens, u.cache_creation_5m_tokens, u.cache_read_tokens,
             u.output_tokens) for u in usage] == [("gpt-5", 2500, 0, 1200, 320)]


def test_tool_results_errors_and_unfinished_runs():
    payloads = [e.payload for e in decided(CLAUDE)]
    results = {p.tool_use_id: p for p in payloads if p.kind == "tool.resulted"}
    assert set(results) == {"toolu_amp_01", "toolu_amp_02", "toolu_amp_03"}  # 04 in progress
    assert results["toolu_amp_02"].is_error
    assert results["toolu_amp_02"].content == "old_str not found in file"
    assert results["toolu_amp_03"].content == "1 passed"
    touched = {(p.path, p.access) for p in payloads if p.kind == "file.touched"}
    assert touched == {("/home/dev/webshop/tests/login.spec.ts", "read"),
                       ("/home/dev/webshop/tests/login.spec.ts", "write")}


def test_thread_record_gives_context_and_title():
    payloads = [e.payload for e in decided(CLAUDE)]
    context = next(p for p in payloads if p.kind == "session.context" and p.cwd)
    assert (context.cwd, context.project) == ("/home/dev/webshop", "webshop")
    assert [p.title for p in payloads if p.kind == "session.titled"] == [
        "Fix the flaky login test"]
    thinking = [p for p in payloads if p.kind == "assistant.message"
                and p.block_type == "thinking"]
    assert thinking and thinking[0].line_uuid == f"{CLAUDE_ID}:1:thinking"


def test_a_streaming_rewrite_keeps_the_final_usage_under_one_key():
    document = json.loads(CLAUDE.read_text())
    streaming = json.loads(json.dumps(document))
    streaming["messages"][7]["usage"].update(outputTokens=3)
    events: list[SessionEvent] = []
    for doc in (streaming, document):
        records = [r for r in amp_records(doc, "x") if r.key == "message:7"]
        events += [out for ev in events_of(records) for out in decide(ev)]
    kept = kept_usage(events)
    assert len(kept) == 1 and next(iter(kept.values())).output_tokens == 40


def test_unknown_records_and_malformed_lines():
    record = Record(session_id="T-x", key="k", version="v",
                    text=json.dumps({"kind": "mystery", "index": 0, "value": {}}))
    out = decide(events_of([record])[0])
    assert [e.type for e in out] == ["line.unknown"]
    bad = Record(session_id="T-x", key="k", version="v", text="{not json")
    with pytest.raises(InvalidEvent):
        decide(events_of([bad])[0])
