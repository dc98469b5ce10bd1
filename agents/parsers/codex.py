"""Codex rollout lines -> normalized session events: the pure half of one agent.

This module owns the meaning of every Codex rollout line (``{timestamp, type, payload}``,
session-formats.md section 3.1) and maps it onto the payload kinds the Claude parser emits, so
the projections need no Codex branch. It sees one line at a time and keeps no state.

Tokens (rules 5 and 6). ``event_msg/token_count`` carries the thread's cumulative
``total_token_usage`` and the ``last_token_usage`` of the response that advanced it, and Codex
re-emits the same info (a rate-limit refresh repeats it unchanged). Each info-bearing line yields
one ``usage.reported`` whose ``message_key`` is the pair (total, last) written out in full and
whose buckets are ``last`` made disjoint the Claude way: ``input_tokens`` = input - cached,
``cache_read_tokens`` = cached, ``output_tokens`` = output (reasoning included, as Claude's
output includes thinking). A re-emission lands on the same key with the same numbers, so the
projections' keep-the-largest rule makes it add nothing, in any order and after any restart.
Buckets come from ``last`` rather than from differences of totals, so a total that resets (a
context-window overflow, a fork that starts from zero) still adds exactly what was billed; the
key holds ``last`` as well as the total, so a reset that revisits an earlier total still gets a
key of its own. A line without ``last_token_usage`` reports its cumulative total under the one
key ``codex:cumulative`` (the largest, i.e. the final total, wins).

Forks, sub-agents and resumed threads. A forked thread's rollout replays its parent's history,
``token_count`` lines included, and a replayed line yields the parent's usage key again (the key
holds the cumulative total, which the child continues). A spawned sub-agent is filed under its
parent's (root) session by the producer, where the replays hit the parent's keys and add
nothing. A user fork is its own session: its own ``session_meta`` declares the parent as
``SessionContext.forked_from`` (its ``forked_from_id``), and the stores exclude the replayed
prefix, identified by the usage keys it shares with the parent (everything in the fork up to
the newest shared row). No single line tells a replay apart, so this parser emits the replayed
lines like any other; the parent's replayed ``session_meta`` (an ``id`` other than the file's
own thread) is skipped. The segments of a resumed thread are one session, so a first row that
repeats the previous segment's last lands on the same key.

Model: ``token_count`` lines carry no model (their ``rate_limits`` only name the ``codex``
limit); the ``turn_context`` before them does, and becomes ``SessionContext.model``. A ``model``
field on the payload or its ``info`` is used if a Codex version writes one; otherwise the usage
has ``model=None`` and consumers bill it under the thread's latest ``turn_context`` model
(:mod:`projections.session_models`), or ``codex-unknown`` (unpriced, never $0) without one.

Duplicates Codex writes itself are read once: the prompt is ``event_msg/user_message`` (its
``response_item`` user-message twin, and the injected instructions, are ``is_meta``); the reply
is the ``response_item`` assistant message (``agent_message`` and ``agent_reasoning`` events
repeat it); a compaction is the ``compacted`` line (``context_compacted`` announces the same).
Reasoning is encrypted and yields nothing. ``line_uuid`` is a hash of the raw line, so a thread
re-read from ``archived_sessions`` lands on the same natural keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from agents.parsers.lines import (
    MAX_RAW_CHARS,
    MAX_TEXT_CHARS,
    Common,
    Obj,
    as_obj,
    as_str,
    clip,
    decide_lines,
    load_json,
    timestamp_of,
    token_count,
)
from agents.parsers.registry import parses
from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    EventPayload,
    SessionCompacted,
    SessionContext,
    SessionEvent,
    SubagentLinked,
    SystemEvent,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UsageReported,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.producers.codex import CodexProducer

__all__ = ["MAX_TEXT_CHARS", "decide", "usage_key"]

Handler = Callable[[Obj, FileChanged, Common], list[EventPayload]]

USAGE_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens",
                "reasoning_output_tokens", "total_tokens")
# Turn lifecycle and text the response items already hold.
SILENT_EVENTS = frozenset({
    "agent_message", "agent_reasoning", "agent_reasoning_raw_content", "task_started",
    "task_complete", "context_compacted",
})
SYSTEM_EVENTS = frozenset({
    "turn_aborted", "error", "warning", "stream_error", "entered_review_mode",
    "exited_review_mode", "undo_completed",
})
SILENT_ITEMS = frozenset({"reasoning", "ghost_snapshot", "compaction"})
TOOL_CALLS = {"function_call": "arguments", "custom_tool_call": "input",
              "local_shell_call": "action", "web_search_call": "action"}
TOOL_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})
NESTED = ("response_item", "event_msg")  # their kind is payload.type


@parses(CodexProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event stands for.

    Pure and deterministic: the same input gives the same events with the same ids
    (``derive_event_id(event.event_id, kind, n)``, ``n`` counting that kind within the line).
    Unknown line types become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object, or does not fit the event schemas; the
            message names the file and line number. The caller dead-letters the event.
    """
    return decide_lines(event, _derive)


def usage_key(total: Obj, last: Obj) -> str:
    """``codex:T<total fields>:L<last fields>``: equal for a re-emitted ``token_count``."""
    def fields(usage: Obj) -> str:
        return ",".join(str(token_count(usage.get(name))) for name in USAGE_FIELDS)
    return f"codex:T{fields(total)}:L{fields(last)}"


def _derive(line: Obj, event: FileChanged) -> list[EventPayload]:
    kind, payload = line.get("type"), as_obj(line.get("payload"))
    sub = as_str(payload.get("type"))
    common: Common = {"line_uuid": derive_event_id("codex-line", event.payload.line),
                      "timestamp": timestamp_of(line), "agent_id": event.payload.agent_id}
    handler = _route(kind, sub)
    if handler is not None:
        return handler(payload, event, common)
    line_type = f"{kind}/{sub}" if kind in NESTED and sub else None if kind is None else str(kind)
    return [UnknownLine(line_type=line_type, raw=event.payload.line[:MAX_RAW_CHARS], **common)]


def _route(kind: object, sub: str | None) -> Handler | None:
    """The handler of a line type (``payload.type`` within the two nested families)."""
    if kind == "response_item":
        return _silent if sub in SILENT_ITEMS else ITEM_HANDLERS.get(sub or "")
    if kind == "event_msg":
        if sub in SILENT_EVENTS:
            return _silent
        return _system if sub in SYSTEM_EVENTS else EVENT_HANDLERS.get(sub or "")
    return LINE_HANDLERS.get(kind) if isinstance(kind, str) else None


def _silent(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    return []


# -- top-level lines ---------------------------------------------------------------------------


def _session_meta(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    """Context of this file's own thread (a sub-agent's, in a ``subagent`` file); a parent's
    ``session_meta`` replayed into a fork or sub-agent is skipped. A main thread's
    ``forked_from_id`` becomes ``forked_from``; a sub-agent's names its parent thread, not a
    session to exclude from, so there its lineage is the ``SubagentLinked`` alone."""
    thread, agent_id = as_str(payload.get("id")), event.payload.agent_id
    if thread is not None and thread != (agent_id or event.session_id):
        return []
    forked = as_str(payload.get("forked_from_id")) if agent_id is None else None
    git = as_obj(payload.get("git"))
    events: list[EventPayload] = [SessionContext(
        cwd=as_str(payload.get("cwd")), git_branch=as_str(git.get("branch")),
        version=as_str(payload.get("cli_version")),
        forked_from=forked if forked != event.session_id else None, **common,
    )]
    if agent_id is not None and thread == agent_id:
        events.append(SubagentLinked(child_agent_id=agent_id, **common))
    return events


def _turn_context(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    cwd, model = as_str(payload.get("cwd")), as_str(payload.get("model"))
    return [SessionContext(cwd=cwd, model=model, **common)] if cwd or model else []


def _compacted(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    return [SessionCompacted(**common)]


# -- response items ----------------------------------------------------------------------------


def _message(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    role = payload.get("role")
    text, truncated = clip(_content_text(payload.get("content")))
    if role == "user":  # the model's copy of a prompt, or injected instructions/context
        return [UserPrompted(text=text, truncated=truncated, is_meta=True, **common)]
    if role == "assistant":
        key = as_str(payload.get("id")) or f"codex:{common['line_uuid']}"
        return [AssistantMessage(message_key=key, text=text, truncated=truncated, **common)]
    return []  # developer/system: harness instructions


def _tool_call(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    kind = as_str(payload.get("type")) or ""
    field = TOOL_CALLS[kind]
    tool_use_id = (as_str(payload.get("call_id")) or as_str(payload.get("id"))
                   or f"{kind}:{common['line_uuid']}")
    name = as_str(payload.get("name")) or kind.removesuffix("_call")
    return [ToolCalled(tool_use_id=tool_use_id, name=name,
                       input=_tool_input(field, payload.get(field)), **common)]


def _tool_input(field: str, value: object) -> Obj:
    """A JSON-object string or an object as is; anything else under its field name."""
    if isinstance(value, str):
        try:
            parsed = load_json(value)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {field: value}
    if isinstance(value, dict):
        return value
    return {} if value is None else {field: value}


def _tool_output(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    output = payload.get("output")
    content, truncated = clip(_output_text(output))
    return [ToolResulted(tool_use_id=as_str(payload.get("call_id")) or "", content=content,
                         truncated=truncated, is_error=_failed(output), **common)]


def _failed(output: object) -> bool:
    """``success: false``, or a JSON result whose ``metadata.exit_code`` is not 0."""
    if isinstance(output, str) and output.startswith("{"):
        try:
            output = load_json(output)
        except ValueError:
            return False
    if not isinstance(output, dict):
        return False
    exit_code = as_obj(output.get("metadata")).get("exit_code")
    return output.get("success") is False or (type(exit_code) is int and exit_code != 0)


# -- events ------------------------------------------------------------------------------------


def _user_message(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    text, truncated = clip(as_str(payload.get("message")) or "")
    kind = as_str(payload.get("kind"))  # older versions flag injected context here
    return [UserPrompted(text=text, truncated=truncated, is_meta=kind not in (None, "plain"),
                         **common)]


def _token_count(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    """One usage report per info-bearing line (see the module docstring); none when ``info``
    is null (a rate-limit refresh) or the response used no tokens."""
    info = as_obj(payload.get("info"))
    total, last = info.get("total_token_usage"), info.get("last_token_usage")
    if not isinstance(total, dict):
        return []
    if isinstance(last, dict):
        key, usage = usage_key(total, last), last
    else:
        key, usage = "codex:cumulative", total
    given = token_count(usage.get("input_tokens"))
    cached = min(token_count(usage.get("cached_input_tokens")), given)
    output = token_count(usage.get("output_tokens"))
    if not (given or output):
        return []
    model = as_str(payload.get("model")) or as_str(info.get("model"))
    return [UsageReported(message_key=key, model=model, input_tokens=given - cached,
                          cache_read_tokens=cached, output_tokens=output, **common)]


def _system(payload: Obj, event: FileChanged, common: Common) -> list[EventPayload]:
    text = as_str(payload.get("message")) or as_str(payload.get("reason")) or ""
    return [SystemEvent(subtype=as_str(payload.get("type")), content=clip(text)[0], **common)]


LINE_HANDLERS: dict[str, Handler] = {
    "session_meta": _session_meta, "turn_context": _turn_context, "compacted": _compacted,
}
ITEM_HANDLERS: dict[str, Handler] = {
    "message": _message, **dict.fromkeys(TOOL_CALLS, _tool_call),
    **dict.fromkeys(TOOL_OUTPUTS, _tool_output),
}
EVENT_HANDLERS: dict[str, Handler] = {"user_message": _user_message, "token_count": _token_count}


# -- small readers -----------------------------------------------------------------------------


def _content_text(content: object) -> str:
    """Message content as text: text items verbatim, other items (images) as ``[type]``."""
    if isinstance(content, str):
        return content
    items = [as_obj(item) for item in content] if isinstance(content, list) else []
    return "\n".join(i["text"] if isinstance(i.get("text"), str) else f"[{i.get('type', 'item')}]"
                     for i in items)


def _output_text(output: object) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and isinstance(output.get("content"), str | list):
        return _content_text(output["content"])
    return _content_text(output) if isinstance(output, list) else json.dumps(output)
