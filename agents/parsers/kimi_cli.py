"""Kimi CLI wire records -> normalized session events: the pure half of one agent.

One line of ``wire.jsonl`` is the metadata header or ``{"timestamp": <epoch seconds>,
"message": {"type": <WireMessage class>, "payload": ...}}`` (kimi-cli ``wire/file.py``,
``wire/types.py``; ``kosong`` message and tooling types). The recorder writes *merged* messages:
consecutive text or thinking deltas arrive as one ``ContentPart``, a tool call with its argument
deltas as one ``ToolCall``. Mapped: ``TurnBegin`` / ``SteerInput`` -> prompt; ``ContentPart``
text / think -> reply / thinking fragment; ``ToolCall`` -> tool call (+ files of ``ReadFile``,
``ReadMediaFile``, ``WriteFile``, ``StrReplaceFile``); ``ToolResult`` -> result
(``return_value.is_error``); ``StatusUpdate.token_usage`` -> usage; ``CompactionBegin`` ->
compaction; ``SubagentEvent`` -> its inner event under the sub-agent's ``agent_id``, linked to
the parent's ``Agent`` call. Control records (turn and step edges, hooks, approvals, MCP
loading) yield nothing; unknown ones ``line.unknown``.

Tokens: ``token_usage`` is one model step's ``kosong.TokenUsage``, already disjoint:
``input_other`` (fresh input, the provider's prompt minus its cached tokens),
``input_cache_read``, ``input_cache_creation`` (Anthropic only) and ``output`` (completion,
reasoning included). Mapped one to one onto ``input_tokens``, ``cache_read_tokens``,
``cache_creation_5m_tokens`` and ``output_tokens``. Keyed by ``message_id`` (the API response
id, e.g. ``chatcmpl-...``); without one by the line's key. The wire names no model: usage has
``model=None`` and is billed as ``kimi-cli-unknown`` unless a model is known otherwise.
Compaction, ``/btw`` side questions and title generation also call the model but write no
usage to the wire: those tokens are not on disk.

Traps. ``context.jsonl`` holds the same conversation again and is rewritten on compaction,
undo and ``/clear``; it is not read, so nothing counts twice. A foreground sub-agent's events
land twice: in its own ``subagents/<id>/wire.jsonl`` and as ``SubagentEvent`` echoes in the
parent's log (older versions wrote only the echo). Both copies are filed under the parent
session and keyed alike: usage by ``message_id``, tools by call id, everything else by a hash
of the sub-agent id and the inner message (the echo's own timestamp differs, the message does
not), so the projections' natural keys count each once. ``/fork`` and ``/undo`` start a new
session whose ``wire.jsonl`` copies the origin's lines byte for byte: the copies keep the same
``message_id`` keys and, being keyed by a hash of the raw line, the same ``line_uuid``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Literal

from agents.parsers.lines import (
    MAX_RAW_CHARS,
    Common,
    Obj,
    as_obj,
    as_str,
    clip,
    decide_lines,
    load_json,
    token_count,
)
from agents.parsers.registry import parses
from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    EventPayload,
    FileTouched,
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
from streams.producers.kimi_cli import KimiCliProducer

__all__ = ["decide", "time_of"]

FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "ReadFile": "read", "ReadMediaFile": "read", "WriteFile": "write", "StrReplaceFile": "write",
}
META_PREFIXES = ("/", "<system>", "<system-reminder>", "<notification")
SILENT = frozenset({
    "TurnEnd", "StepBegin", "CompactionEnd", "HookTriggered", "HookResolved", "MCPLoadingBegin",
    "MCPLoadingEnd", "ApprovalRequest", "ApprovalResponse", "ApprovalRequestResolved",
    "ToolCallRequest", "ToolCallPart", "QuestionRequest", "QuestionResponse", "HookRequest",
    "HookResponse", "PlanDisplay", "BtwBegin",
})
NOTICES = frozenset({"StepInterrupted", "StepRetry", "Notification", "BtwEnd"})


@parses(KimiCliProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event of ``kimi-cli`` stands for.

    Pure and deterministic (ids derive from the input event). Unknown records become
    ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object, or a payload does not fit the schemas.
    """
    return decide_lines(event, derive, time_of=time_of)


def time_of(record: Obj) -> datetime | None:
    """The record's ``timestamp`` (float epoch seconds) as an aware UTC datetime."""
    raw = record.get("timestamp")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        return None
    try:
        return datetime.fromtimestamp(raw, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one wire line."""
    if record.get("type") == "metadata":
        return _metadata(record, event)
    message = as_obj(record.get("message"))
    agent_id = event.payload.agent_id
    key = _inner_key(agent_id, message) if agent_id else _line_key(event.payload.line)
    common: Common = {"line_uuid": key, "timestamp": time_of(record), "agent_id": agent_id}
    return _message(message, common)


def _metadata(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The header: the work dir's folder (its md5) as the project, for the main log."""
    if event.payload.agent_id:
        return []
    folder = PurePath(event.payload.path).parent.parent.name
    return [SessionContext(project=folder or None)]


def _message(message: Obj, common: Common) -> list[EventPayload]:
    kind, payload = as_str(message.get("type")), as_obj(message.get("payload"))
    handler = HANDLERS.get(kind or "")
    if handler is not None:
        return handler(payload, common)
    if kind in SILENT:
        return []
    if kind in NOTICES:
        return [SystemEvent(subtype=kind, content=_notice(payload), **common)]
    raw = json.dumps(message, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=kind, raw=raw, agent_id=common["agent_id"],
                        line_uuid=derive_event_id("kimi-record", raw))]


def _prompt(payload: Obj, common: Common) -> list[EventPayload]:
    text, truncated = clip(_input_text(payload.get("user_input")))
    is_meta = not text.strip() or text.lstrip().startswith(META_PREFIXES)
    payloads: list[EventPayload] = []
    if common["agent_id"]:
        payloads.append(SubagentLinked(child_agent_id=common["agent_id"],
                                       **{**common, "line_uuid": None}))
    payloads.append(UserPrompted(text=text, truncated=truncated, is_meta=is_meta, **common))
    return payloads


def _input_text(user_input: object) -> str:
    """``user_input``: a string, or content parts (text joined; media as ``[kind]``)."""
    if isinstance(user_input, str):
        return user_input
    parts = user_input if isinstance(user_input, list) else []
    return "\n".join(_part_text(as_obj(part)) for part in parts)


def _part_text(part: Obj) -> str:
    text = part.get("text")
    return text if isinstance(text, str) else f"[{as_str(part.get('type')) or 'part'}]"


def _content(payload: Obj, common: Common) -> list[EventPayload]:
    """A merged text or thinking part: one fragment, its own message (the step's id comes
    only later, on its ``StatusUpdate``)."""
    kind = payload.get("type")
    if kind == "think":
        text, block = as_str(payload.get("think")) or "", "thinking"
    else:
        text, block = as_str(payload.get("text")) or "", "text"
    if kind not in ("text", "think") or not text:
        return []
    clipped, truncated = clip(text)
    return [AssistantMessage(message_key=common["line_uuid"], block_type=block, text=clipped,
                             truncated=truncated, **common)]


def _tool_call(payload: Obj, common: Common) -> list[EventPayload]:
    tool_use_id = as_str(payload.get("id")) or common["line_uuid"]
    function = as_obj(payload.get("function"))
    name, args = as_str(function.get("name")) or "", _arguments(function.get("arguments"))
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name, input=args,
                                               **common)]
    path, access = as_str(args.get("path")), FILE_ACCESS.get(name)
    if path and access:
        payloads.append(FileTouched(path=path, tool=name, access=access,
                                    tool_use_id=tool_use_id, **common))
    return payloads


def _arguments(raw: object) -> dict[str, Any]:
    """The JSON-string arguments as an object; anything else kept under ``arguments``."""
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = load_json(raw)
    except ValueError:
        return {"arguments": raw[:MAX_RAW_CHARS]}
    return value if isinstance(value, dict) else {"arguments": value}


def _tool_result(payload: Obj, common: Common) -> list[EventPayload]:
    tool_use_id = as_str(payload.get("tool_call_id"))
    if tool_use_id is None:
        return []
    value = as_obj(payload.get("return_value"))
    output = value.get("output")
    text = output if isinstance(output, str) else _input_text(output)
    content, truncated = clip(text or as_str(value.get("message")) or "")
    return [ToolResulted(tool_use_id=tool_use_id, is_error=value.get("is_error") is True,
                         content=content, truncated=truncated, **common)]


def _status(payload: Obj, common: Common) -> list[EventPayload]:
    usage = payload.get("token_usage")
    if not isinstance(usage, dict):
        return []
    fresh, output = token_count(usage.get("input_other")), token_count(usage.get("output"))
    read = token_count(usage.get("input_cache_read"))
    written = token_count(usage.get("input_cache_creation"))
    if not (fresh or output or read or written):
        return []
    key = as_str(payload.get("message_id")) or common["line_uuid"]
    return [UsageReported(message_key=key, input_tokens=fresh, output_tokens=output,
                          cache_read_tokens=read, cache_creation_5m_tokens=written, **common)]


def _compaction(payload: Obj, common: Common) -> list[EventPayload]:
    return [SessionCompacted(**common)]


def _subagent(payload: Obj, common: Common) -> list[EventPayload]:
    """An echoed sub-agent event: the inner message under the sub-agent, keyed as its own
    wire log keys it, and the link to the parent's ``Agent`` call."""
    call = as_str(payload.get("parent_tool_call_id")) or as_str(payload.get("task_tool_call_id"))
    child = as_str(payload.get("agent_id")) or call
    inner = as_obj(payload.get("event"))
    if child is None:
        return []
    own = {**common, "agent_id": child, "line_uuid": _inner_key(child, inner)}
    link = SubagentLinked(child_agent_id=child, tool_use_id=call,
                          **{**common, "line_uuid": None})
    derived = _message(inner, own)
    return [link, *(p for p in derived if not isinstance(p, SubagentLinked)
                    or p.child_agent_id != child)]


def _notice(payload: Obj) -> str:
    for name in ("error_type", "title", "body", "response", "error"):
        text = as_str(payload.get(name))
        if text:
            return clip(text)[0]
    return ""


def _line_key(line: str) -> str:
    """A main-log line's key: its raw text (a ``/fork`` copy is byte-identical)."""
    return derive_event_id("kimi-line", line)


def _inner_key(agent_id: str, message: Obj) -> str:
    """A sub-agent message's key: the agent and the message, not the line around it."""
    return derive_event_id("kimi-subagent", agent_id,
                           json.dumps(message, sort_keys=True, ensure_ascii=False))


HANDLERS: dict[str, Callable[[Obj, Common], list[EventPayload]]] = {
    "TurnBegin": _prompt, "SteerInput": _prompt, "ContentPart": _content,
    "ToolCall": _tool_call, "ToolResult": _tool_result, "StatusUpdate": _status,
    "CompactionBegin": _compaction, "SubagentEvent": _subagent,
}
