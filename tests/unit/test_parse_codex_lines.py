"""decide() for Codex rollout lines: each trap on hand-written samples (tests/samples/codex),
then every real localpush rollout checked against its own final ``total_token_usage`` and the
fixture author's expected totals.

Sessions are assigned the way the producer assigns them (``CodexProducer.describe``), and token
totals are computed with the projection's rule (largest report per ``(session, message_key)``,
summed), so what is checked here is what ``usage_facts`` will hold.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents import parse_lines
from agents.parsers.codex import decide
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged, FileLine, file_line_event, file_removed_event
from streams.errors import InvalidEvent
from streams.producers.codex import CodexProducer
from tests import codex_cross_expected as expected
from tests.fixtures_path import shared_dir

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "codex"
DAY = SAMPLES / "sessions" / "2026" / "03" / "10"
MAIN_ID = "019cd6f9-7a80-7a11-8c11-0000000000a1"
CHILD_ID = "019cd6fe-0e60-7b22-8c22-0000000000b2"
MAIN = DAY / f"rollout-2026-03-10T09-00-00-{MAIN_ID}.jsonl"
CHILD = DAY / f"rollout-2026-03-10T09-05-00-{CHILD_ID}.jsonl"
BROKEN = DAY / "rollout-2026-03-10T10-00-00-019cd730-6900-7c33-8c33-0000000000c3.jsonl"
# Resolved at import: the test harness strips SESSIONSTREAM_* variables once the stack starts.
LOCALPUSH = shared_dir() / "fixtures" / "sessions" / "codex" / "localpush" / "codex" / "2026-02-23"
MTIME = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
# The main sample's final total_token_usage (input includes cached; output includes reasoning).
MAIN_FINAL = {"input": 39000, "cached": 33728, "output": 650, "total": 39650}
CHILD_OWN = {"input": 26000, "cached": 25088, "output": 90, "total": 26090}  # its one response


async def _unused_publish(events: list[FileChanged]) -> None:
    raise AssertionError("describe() only")


PRODUCER = CodexProducer([SAMPLES], Path("unused-checkpoint.json"), _unused_publish)


# --- driving decide() the way the producer would -------------------------------------------


def line_events(path: Path, session: tuple[str, str, str | None] | None = None
                ) -> list[FileChanged]:
    """One file-changes event per non-empty line with its byte offset; session, kind and agent
    from ``CodexProducer.describe`` unless given."""
    data = path.read_bytes()
    first = data.split(b"\n", 1)[0].decode()
    session_id, kind, agent_id = session or PRODUCER.describe(path, first)
    events, offset = [], 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw.decode(),
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("codex", session_id, line))
        offset += len(raw) + 1
    return events


def decide_all(events: list[FileChanged]) -> list[SessionEvent]:
    return [out for event in events for out in decide(event)]


def payloads(events: list[SessionEvent], kind: str) -> list:
    return [e.payload for e in events if e.type == kind]


def usage_totals(events: list[SessionEvent]) -> dict[str, dict[str, int]]:
    """The projection's rule: the largest report per (session, message_key), summed; returned
    in Codex terms (``input`` includes ``cached``) to compare with ``total_token_usage``."""
    best: dict[str, dict] = defaultdict(dict)
    for event in events:
        p = event.payload
        if p.kind == "usage.reported":
            kept = best[event.session_id].get(p.message_key)
            if kept is None or p.total > kept.total:
                best[event.session_id][p.message_key] = p
    return {session: {
        "input": sum(u.input_tokens + u.cache_read_tokens for u in kept.values()),
        "cached": sum(u.cache_read_tokens for u in kept.values()),
        "output": sum(u.output_tokens for u in kept.values()),
        "total": sum(u.total for u in kept.values()),
    } for session, kept in best.items()}


# --- the traps, on hand-written samples ----------------------------------------------------


def test_re_emitted_token_counts_share_a_key_and_add_nothing() -> None:
    events = decide_all(line_events(MAIN))
    usage = payloads(events, "usage.reported")
    assert len(usage) == 6  # three responses, each token_count written twice
    assert len({u.message_key for u in usage}) == 3
    for first, again in zip(usage[::2], usage[1::2], strict=True):
        assert first.model_dump(exclude={"line_uuid", "timestamp"}) == again.model_dump(
            exclude={"line_uuid", "timestamp"})
    assert usage_totals(events) == {MAIN_ID: MAIN_FINAL}
    assert sum(u.total for u in usage) == 2 * MAIN_FINAL["total"]  # what naive summing gives


def test_usage_buckets_are_disjoint_and_keyed_by_total_and_last() -> None:
    first = payloads(decide_all(line_events(MAIN)), "usage.reported")[0]
    assert first.message_key == "codex:T12000,8000,300,120,12300:L12000,8000,300,120,12300"
    assert (first.input_tokens, first.cache_read_tokens, first.output_tokens) == (4000, 8000, 300)
    assert first.cache_creation_5m_tokens == first.cache_creation_1h_tokens == 0
    assert first.total == 12300
    # The model is on the turn_context line: the usage names none, consumers resolve it.
    assert first.model is None


def test_order_restarts_and_replays_do_not_change_totals() -> None:
    lines = line_events(MAIN)
    shuffled = lines[::-1] + random.Random(7).sample(lines, len(lines))
    assert usage_totals(decide_all(shuffled)) == {MAIN_ID: MAIN_FINAL}
    assert [e.event_id for e in decide(lines[11])] == [e.event_id for e in decide(lines[11])]


def test_event_ids_are_unique_and_timestamps_come_from_the_line() -> None:
    events = decide_all(line_events(MAIN))
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.source == "codex" and e.session_id == MAIN_ID for e in events)
    assert events[0].occurred_at == datetime(2026, 3, 10, 9, 0, 0, 120000, tzinfo=UTC)
    assert all(e.payload.timestamp == e.occurred_at for e in events)


def test_session_meta_and_turn_context_give_the_context() -> None:
    contexts = payloads(decide_all(line_events(MAIN)), "session.context")
    meta, turn = contexts
    assert (meta.cwd, meta.version, meta.git_branch, meta.agent_id) == (
        "/home/dev/demo", "0.110.0", "main", None)
    assert (turn.cwd, turn.version, turn.model) == ("/home/dev/demo", None, "gpt-5.3-codex")


def test_tool_calls_and_results() -> None:
    events = decide_all(line_events(MAIN))
    calls = {c.tool_use_id: c for c in payloads(events, "tool.called")}
    web = next(key for key in calls if key.startswith("web_search_call:"))
    assert set(calls) == {"call_A1", "call_B2", "call_C3", web}
    assert (calls["call_A1"].name, calls["call_A1"].input) == (
        "exec_command", {"cmd": "pytest -q", "workdir": "/home/dev/demo"})
    assert calls["call_B2"].name == "apply_patch"
    assert calls["call_B2"].input["input"].startswith("*** Begin Patch")
    assert calls["call_C3"].input == {"arguments": "[REDACTED_ARGUMENTS len=12]"}
    assert (calls[web].name, calls[web].input) == (
        "web_search", {"type": "search", "query": "pytest tmp_path"})
    results = {r.tool_use_id: r for r in payloads(events, "tool.resulted")}
    assert {key: r.is_error for key, r in results.items()} == {
        "call_A1": True, "call_B2": False, "call_C3": False}
    assert "1 failed" in results["call_A1"].content
    assert results["call_C3"].content == "ok"


def test_prompts_replies_and_the_duplicates_codex_writes() -> None:
    events = decide_all(line_events(MAIN))
    prompts = payloads(events, "user.prompted")
    assert [p.text for p in prompts if not p.is_meta] == ["fix the failing test"]
    meta = [p.text for p in prompts if p.is_meta]
    assert meta[0].startswith("<environment_context>") and meta[1] == "fix the failing test"
    replies = payloads(events, "assistant.message")
    assert [(r.text, r.block_type, r.model) for r in replies] == [
        ("Fixed: the test now passes.", "text", None)]
    # developer message, reasoning, agent_reasoning, agent_message, task_* yield nothing
    assert Counter(e.type for e in events) == {
        "session.context": 2, "user.prompted": 3, "assistant.message": 1, "tool.called": 4,
        "tool.resulted": 3, "usage.reported": 6, "session.compacted": 1, "system.event": 1,
        "line.unknown": 2,
    }


def test_compaction_system_events_and_unknown_lines() -> None:
    events = decide_all(line_events(MAIN))
    assert len(payloads(events, "session.compacted")) == 1  # not again for context_compacted
    assert [(s.subtype, s.content) for s in payloads(events, "system.event")] == [
        ("turn_aborted", "interrupted")]
    unknown = payloads(events, "line.unknown")
    assert [u.line_type for u in unknown] == ["event_msg/plan_update", "thread_renamed"]
    assert json.loads(unknown[1].raw)["payload"] == {"name": "Fix the failing test"}


def test_forked_subagent_replay_counts_once_under_the_parent() -> None:
    child = line_events(CHILD)
    assert {(e.session_id, e.payload.file_kind, e.payload.agent_id) for e in child} == {
        (MAIN_ID, "subagent", CHILD_ID)}
    events = decide_all(line_events(MAIN) + child)
    expected = {key: MAIN_FINAL[key] + CHILD_OWN[key] for key in MAIN_FINAL}
    assert usage_totals(events) == {MAIN_ID: expected}
    assert len({c.tool_use_id for c in payloads(events, "tool.called")}) == 4
    links = payloads(events, "subagent.linked")
    assert [(link.child_agent_id, link.agent_id) for link in links] == [(CHILD_ID, CHILD_ID)]
    # Filed as its own session (a user fork), the parser still emits the replayed prefix (no
    # single line tells a replay apart) and declares the parent; the stores drop the prefix by
    # the keys it shares with the parent (see the codex_cross tests below).
    alone = decide_all(line_events(CHILD, (CHILD_ID, "main", None)))
    assert usage_totals(alone)[CHILD_ID]["total"] == 51590 == CHILD_OWN["total"] + 25500
    assert [c.forked_from for c in payloads(alone, "session.context")] == [
        MAIN_ID, None]  # the child's own meta, then its turn_context


def test_info_null_zero_usage_cumulative_fallback_and_a_model_when_present() -> None:
    def one(payload: dict) -> list[SessionEvent]:
        line = json.dumps({"timestamp": "2026-03-10T09:00:00Z", "type": "event_msg",
                           "payload": {"type": "token_count", **payload}})
        return decide(file_line_event("codex", MAIN_ID, FileLine(
            path="/x/rollout.jsonl", offset=0, line_no=1, line=line, mtime=MTIME)))

    zero = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    usage = {"input_tokens": 500, "cached_input_tokens": 900, "output_tokens": 20}
    assert one({"info": None, "rate_limits": {"limit_id": "codex"}}) == []
    assert one({"info": {"total_token_usage": usage, "last_token_usage": zero}}) == []
    [cumulative] = one({"info": {"total_token_usage": usage}, "model": "gpt-5.3-codex"})
    p = cumulative.payload
    assert (p.message_key, p.model) == ("codex:cumulative", "gpt-5.3-codex")
    assert (p.input_tokens, p.cache_read_tokens, p.output_tokens) == (0, 500, 20)  # clamped


def test_malformed_lines_raise_invalid_event_naming_path_and_line() -> None:
    events = line_events(BROKEN)
    with pytest.raises(InvalidEvent, match=rf"{BROKEN.name} line 2: not JSON"):
        decide(events[1])
    with pytest.raises(InvalidEvent, match=r"line 3: not a JSON object \(got list\)"):
        decide(events[2])
    assert [e.type for e in decide(events[3])] == ["usage.reported"]


def test_archived_copy_lands_on_the_same_natural_keys(tmp_path: Path) -> None:
    archived = tmp_path / "archived_sessions" / MAIN.name
    archived.parent.mkdir()
    shutil.copy(MAIN, archived)

    def keys(events: list[SessionEvent]) -> list:
        return [(e.session_id, e.payload.line_uuid, getattr(e.payload, "message_key", None))
                for e in events]

    live, moved = decide_all(line_events(MAIN)), decide_all(line_events(archived))
    assert keys(live) == keys(moved)
    assert {e.event_id for e in live}.isdisjoint(e.event_id for e in moved)


def test_file_removed_becomes_session_file_removed() -> None:
    line = FileLine(path=str(CHILD), offset=0, line_no=1, mtime=MTIME, file_kind="subagent",
                    agent_id=CHILD_ID)
    [out] = decide(file_removed_event("codex", MAIN_ID, line))
    assert (out.type, out.payload.path, out.payload.agent_id) == (
        "session.file_removed", str(CHILD), CHILD_ID)


# --- the real rollouts ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def localpush() -> dict:
    rollouts = sorted((LOCALPUSH / "raw" / "sessions").glob("rollout-*.jsonl"))
    if not rollouts:
        pytest.skip(f"no real Codex rollouts at {LOCALPUSH} (set SESSIONSTREAM_SHARED_DIR)")
    return {
        "rollouts": rollouts,
        "events": {path: decide_all(line_events(path)) for path in rollouts},
        "manifest": json.loads((LOCALPUSH / "manifest.json").read_text()),
        "sessions": {s["id"]: s for s in json.loads(
            (LOCALPUSH / "expected" / "codex-sessions.json").read_text())["sessions"]},
    }


def raw_lines(path: Path) -> list[dict]:
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]


def final_total(path: Path) -> dict[str, int]:
    """The oracle: the last info-bearing token_count's total_token_usage, read directly."""
    totals = [line["payload"]["info"]["total_token_usage"] for line in raw_lines(path)
              if line["type"] == "event_msg" and line["payload"].get("type") == "token_count"
              and line["payload"].get("info")]
    last = totals[-1]
    return {"input": last["input_tokens"], "cached": last["cached_input_tokens"],
            "output": last["output_tokens"], "total": last["total_tokens"]}


def test_real_rollouts_token_totals_equal_final_totals_and_the_authors(localpush) -> None:
    for path, events in localpush["events"].items():
        [(session, got)] = usage_totals(events).items()
        assert got == final_total(path), path.name
        tokens = localpush["sessions"][session]["tokens"]
        assert (got["input"], got["cached"], got["output"]) == (
            tokens["input"], tokens["cache_read"], tokens["output"]), path.name


def test_real_rollouts_day_totals_equal_the_manifest(localpush) -> None:
    """The manifest counts UTC 2026-02-23 only; one thread runs into the 24th, so this also
    checks that each response is dated by its own line."""
    day = [e for events in localpush["events"].values() for e in events
           if e.occurred_at.date().isoformat() == "2026-02-23"]
    per_session = usage_totals(day).values()
    got = {key: sum(totals[key] for totals in per_session) for key in MAIN_FINAL}
    expected = localpush["manifest"]["verification"]["token_totals"]
    assert (got["input"], got["cached"], got["output"], got["total"]) == (
        expected["input"], expected["cache_read"], expected["output"], expected["total"])


def test_real_rollouts_sessions_tools_prompts_and_no_unknown_lines(localpush) -> None:
    for path, events in localpush["events"].items():
        lines = raw_lines(path)
        thread = lines[0]["payload"]["id"]
        assert path.stem.endswith(thread)
        assert {e.session_id for e in events} == {thread}
        items = [line["payload"] for line in lines if line["type"] == "response_item"]
        call_ids = {i["call_id"] for i in items if i["type"] in (
            "function_call", "custom_tool_call", "local_shell_call")}
        searches = sum(i["type"] == "web_search_call" for i in items)
        assert len({c.tool_use_id for c in payloads(events, "tool.called")}) == (
            len(call_ids) + searches), path.name
        prompts = [p for p in payloads(events, "user.prompted") if not p.is_meta]
        assert len(prompts) == localpush["sessions"][thread]["message_count"], path.name
        assert payloads(events, "line.unknown") == []
        compactions = sum(line["type"] == "compacted" for line in lines)
        assert len(payloads(events, "session.compacted")) == compactions


def test_lone_surrogates_are_replaced_so_codex_events_encode() -> None:
    line = json.dumps({"timestamp": "2026-03-10T09:00:01Z", "type": "event_msg",
                       "payload": {"type": "user_message", "message": "cut emoji \ud83d|"}})
    assert "\\ud83d" in line
    events = decide(file_line_event("codex", "s1", FileLine(
        path="/p/rollout.jsonl", offset=0, line_no=1, line=line,
        mtime=datetime(2026, 3, 10, tzinfo=UTC))))
    for event in events:
        event.model_dump_json().encode()  # raises UnicodeEncodeError on a lone surrogate
    assert any("\ufffd" in event.model_dump_json() for event in events)


# --- forks, sub-agents and resumed threads across files (tests/samples/codex_cross) ----------

CROSS = Path(__file__).resolve().parents[1] / "samples" / "codex_cross"


def cross_events() -> list[SessionEvent]:
    """Every line of every cross sample through the one parse step, filed by the producer."""
    return [out for path in sorted(CROSS.rglob("rollout-*.jsonl"))
            for event in line_events(path) for out in parse_lines.decide(event)]


def cross_file(thread: str) -> Path:
    return next(CROSS.rglob(f"rollout-*-{thread}.jsonl"))


def owner_rank(event: SessionEvent) -> tuple[str, datetime | None]:
    """The store's tie-break between equal rows: the main thread first, then the earliest."""
    return event.payload.agent_id or "", event.payload.timestamp


def stored_usage(events: list[SessionEvent]) -> dict[tuple[str, str], SessionEvent]:
    """``usage_facts``: one row per (session, message_key), the largest total, ties to
    :func:`owner_rank`."""
    rows: dict[tuple[str, str], SessionEvent] = {}
    for event in events:
        if event.type != "usage.reported":
            continue
        key = (event.session_id, event.payload.message_key)
        kept = rows.get(key)
        if kept is None or (-event.payload.total, *owner_rank(event)) < (
                -kept.payload.total, *owner_rank(kept)):
            rows[key] = event
    return rows


def fork_cutoffs(events: list[SessionEvent], rows: dict[tuple[str, str], SessionEvent]
                 ) -> dict[str, datetime]:
    """The rule the stores apply to a declared fork: everything in it up to the newest of its
    rows whose usage key also occurs in the parent session is the parent's, copied."""
    declared = {e.session_id: e.payload.forked_from for e in events
                if e.type == "session.context" and e.payload.forked_from}
    cutoffs = {}
    for fork, parent in declared.items():
        shared = [row.payload.timestamp for (session, key), row in rows.items()
                  if session == fork and (parent, key) in rows]
        if shared:
            cutoffs[fork] = max(shared)
    return cutoffs


def cross_totals(events: list[SessionEvent]) -> tuple[dict, dict]:
    """(per session, per (session, agent)) totals in the terms of codex_cross_expected."""
    rows = stored_usage(events)
    cutoffs = fork_cutoffs(events, rows)

    def own(event: SessionEvent) -> bool:
        cutoff = cutoffs.get(event.session_id)
        return cutoff is None or event.payload.timestamp > cutoff

    per_session: dict = defaultdict(Counter)
    per_agent: dict = defaultdict(Counter)
    for (session, _), row in rows.items():
        if own(row):
            u = row.payload
            for totals in (per_session[session], per_agent[session, u.agent_id]):
                totals.update({"input_tokens": u.input_tokens,
                               "cache_read_tokens": u.cache_read_tokens,
                               "output_tokens": u.output_tokens, "total_tokens": u.total,
                               "api_calls": 1})
    calls: dict[tuple[str, str], SessionEvent] = {}
    for event in events:
        key = (event.session_id, getattr(event.payload, "tool_use_id", ""))
        if event.type == "tool.called" and own(event) and (
                key not in calls or owner_rank(event) < owner_rank(calls[key])):
            calls[key] = event
    for (session, _), event in calls.items():
        per_session[session]["tool_calls"] += 1
        per_agent[session, event.payload.agent_id]["tool_calls"] += 1
    prompts = {(e.session_id, e.payload.line_uuid) for e in events
               if e.type == "user.prompted" and not e.payload.is_meta
               and e.payload.agent_id is None and own(e)}
    for session, _ in prompts:
        per_session[session]["human_prompts"] += 1
    return ({s: dict(t) for s, t in per_session.items()},
            {k: dict(t) for k, t in per_agent.items()})


def test_cross_samples_total_what_was_computed_by_hand() -> None:
    events = cross_events()
    per_session, per_agent = cross_totals(events)
    assert per_session == expected.EXPECTED
    assert {(session, agent): totals for session, agents in expected.AGENTS.items()
            for agent, totals in agents.items()} == {
        key: totals for key, totals in per_agent.items() if key[0] in expected.AGENTS}
    # Without the fork rule F would also count all of P's own calls again.
    rows = stored_usage(events)
    assert sum(1 for session, _ in rows if session == expected.F) == (
        expected.AGENTS[expected.P][None]["api_calls"] + expected.EXPECTED[expected.F]["api_calls"])


def test_cross_fork_declares_its_parent_and_shares_exactly_the_parents_keys() -> None:
    events = cross_events()
    declared = {(e.session_id, e.payload.agent_id, e.payload.forked_from) for e in events
                if e.type == "session.context" and e.payload.forked_from}
    assert declared == {(fork, None, parent) for fork, parent in expected.FORKED_FROM.items()}
    rows = stored_usage(events)
    keys = {session: {k for s, k in rows if s == session} for session, _ in rows}
    own_p = {k for (s, k), row in rows.items() if s == expected.P and row.payload.agent_id is None}
    assert keys[expected.F] & keys[expected.P] == own_p  # the replay, and nothing of F's own
    assert len(own_p) == 3
    # The cutoff is the end of the replay burst, before F's own turn.
    assert fork_cutoffs(events, rows) == {
        expected.F: datetime(2026, 3, 12, 9, 10, 0, 522000, tzinfo=UTC)}


def test_cross_session_metas_forks_subagents_and_segments() -> None:
    def contexts(thread: str) -> list:
        return [(c.agent_id, c.version, c.forked_from)
                for c in payloads(decide_all(line_events(cross_file(thread))), "session.context")
                if c.model is None]  # the session_meta ones (turn_context names the model)

    # F: its own meta declares P; P's replayed meta is skipped.
    assert contexts(expected.F) == [(None, "0.112.0", expected.P)]
    # S1 (old shape, forked_from_id = P, filed under P): no forked_from, linked; P's replayed
    # meta is not the sub-agent's own and is skipped.
    assert contexts(expected.S1) == [(expected.S1, "0.112.0", None)]
    s1 = decide_all(line_events(cross_file(expected.S1)))
    assert [link.child_agent_id for link in payloads(s1, "subagent.linked")] == [expected.S1]
    s2 = decide_all(line_events(cross_file(expected.S2)))
    assert {e.session_id for e in s2} == {expected.P}
    assert [link.child_agent_id for link in payloads(s2, "subagent.linked")] == [expected.S2]
    # R's later segment: the original thread id, forked_from_id null.
    segment = next(CROSS.rglob(f"rollout-*-{expected.R}_{expected.SEG}.jsonl"))
    seg = decide_all(line_events(segment))
    assert {e.session_id for e in seg} == {expected.R}
    assert [(c.version, c.forked_from) for c in payloads(seg, "session.context")
            if c.model is None] == [("0.153.2", None)]
    # Its first row repeats segment 1's last: the same key, so one fact.
    first = payloads(decide_all(line_events(cross_file(expected.R))), "usage.reported")[-1]
    assert payloads(seg, "usage.reported")[0].message_key == first.message_key


def test_cross_session_meta_forked_from_only_for_another_main_session() -> None:
    def context(session: str, agent_id: str | None, **payload: object) -> list:
        line = json.dumps({"timestamp": "2026-03-12T09:00:00Z", "type": "session_meta",
                           "payload": payload})
        kind = "subagent" if agent_id else "main"
        return [(e.type, getattr(e.payload, "forked_from", None)) for e in decide(
            file_line_event("codex", session, FileLine(
                path="/x/rollout.jsonl", offset=0, line_no=1, line=line, mtime=MTIME,
                file_kind=kind, agent_id=agent_id)))]

    P, F, S = expected.P, expected.F, expected.S2
    assert context(F, None, id=F, forked_from_id=P) == [("session.context", P)]
    assert context(F, None, id=F, forked_from_id=None) == [("session.context", None)]
    assert context(F, None, id=P) == []  # the parent's replayed meta
    assert context(P, S, id=S, forked_from_id=P) == [
        ("session.context", None), ("subagent.linked", None)]
    assert context(P, S, id=P) == []  # the parent's meta replayed into a sub-agent
