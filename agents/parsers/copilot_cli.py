"""GitHub Copilot CLI session events -> normalized session events: the pure half of one agent.

One line of ``events.jsonl`` is one event ``{type, id, parentId, timestamp, data, agentId?}``
(github/copilot-sdk ``session-events``). Mapped: ``session.start`` / ``session.resume`` /
``session.context_changed`` / ``session.model_change`` -> context (cwd, branch, version,
model); ``user.message`` -> prompt (meta when injected: a skill, another agent, autopilot);
``assistant.message`` -> reply text, reasoning, tool requests and the files they name;
``assistant.reasoning`` -> a thinking fragment; ``tool.execution_start`` / ``_complete`` ->
the call and its result (``success: false`` is an error); ``subagent.started`` -> the link to a
sub-agent whose events carry its ``agentId``; ``session.compaction_complete`` -> compaction;
``session.shutdown`` -> usage; notices -> system events. Known bookkeeping events give nothing;
unknown ones become ``line.unknown``. A legacy whole-JSON session (``chatMessages``) arrives as a
snapshot (:func:`derive_snapshot`).

Tokens: per-request usage (``assistant.usage``) is ephemeral, never written. What is on disk is
``session.shutdown.data.modelMetrics[model].usage``, the totals of one CLI process lifetime,
written when it exits: ``inputTokens`` INCLUDES ``cacheReadTokens`` and ``cacheWriteTokens``,
``outputTokens`` INCLUDES ``reasoningTokens``. Reported disjoint: input = inputTokens - cache
read - cache write (clamped at 0), cache_read, cache_creation_5m = cache write, output =
outputTokens. ``agentMetrics`` is a per-agent split of the same totals and is not added again;
``assistant.message.outputTokens`` repeats per reply what the shutdown sums and is not reported.

Traps: a resumed session appends a new lifetime and, at its exit, another shutdown; each
shutdown is keyed by its own event id (``<id>:<model>``), so lifetimes add up and a re-read line
lands on the same key. A lifetime that never shut down (crash, ``/new``) reports no tokens.
Tool calls are keyed by ``toolCallId`` (the request in the reply and the start event are one
call); replies by ``messageId``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from agents.parsers.lines import (
    MAX_RAW_CHARS,
    Common,
    Obj,
    as_obj,
    as_str,
    clip,
    decide_lines,
    load_line,
    parse_time,
    token_count,
    where,
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
    SessionTitled,
    SubagentLinked,
    SystemEvent,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UsageReported,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.errors import InvalidEvent
from streams.producers.copilot_cli import CopilotCliProducer

__all__ = ["decide", "derive", "derive_snapshot"]

FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "view": "read", "read": "read", "create": "write", "edit": "write", "write": "write",
}
PATH_KEYS = ("path", "file_path", "filePath")
META_SOURCES = ("skill-", "agent-")
META_PREFIXES = ("<skill-context", "<system-reminder")
NOTICES = frozenset({"session.info", "session.warning", "session.error", "abort",
                     "subagent.completed", "subagent.failed", "session.task_complete"})
# Bookkeeping with nothing to report (turn boundaries, hooks, permissions, cache state...).
IGNORED = frozenset({
    "session.idle", "assistant.turn_start", "assistant.turn_end", "assistant.intent",
    "session.usage_checkpoint", "session.truncation", "session.compaction_start",
    "hook.start", "hook.end", "permission.requested", "permission.completed",
    "session.mode_changed", "session.plan_changed", "session.todos_changed",
    "session.workspace_file_changed", "session.handoff", "session.snapshot_rewind",
    "session.auto_mode_resolved", "session.permissions_changed", "skill.invoked",
    "subagent.selected", "subagent.deselected", "tool.user_requested", "session.usage_info",
    "session.context_cleared", "session.remote_steerable_changed", "tool_search.activated",
    "session.binary_asset", "external_tool.requested", "external_tool.completed",
    "system.notification", "session.session_limits_changed",
})


@parses(CopilotCliProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events of one ``sessions.file-changes.v1`` event of ``copilot-cli``.

    Pure and deterministic (ids ``derive_event_id(event.event_id, kind, n)``). Unknown events
    become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object, a legacy snapshot is cut short or not an
            object, or a payload does not fit the event schemas; the caller dead-letters it.
    """
    return decide_lines(event, derive, snapshot=derive_snapshot)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one ``events.jsonl`` line."""
    kind = as_str(record.get("type"))
    data = as_obj(record.get("data"))
    agent_id = (as_str(record.get("agentId")) or as_str(data.get("parentToolCallId"))
                or event.payload.agent_id)
    common: Common = {"line_uuid": as_str(record.get("id")),
                      "timestamp": parse_time(record.get("timestamp")), "agent_id": agent_id}
    handler = HANDLERS.get(kind or "")
    if handler is not None:
        return handler(data, record, common)
    if kind in IGNORED:
        return []
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=kind, raw=raw, agent_id=agent_id,
                        line_uuid=derive_event_id("copilot-event", raw))]


# -- session -----------------------------------------------------------------------------------


def _context(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    where_ = as_obj(data.get("context")) or data
    cwd, branch = as_str(where_.get("cwd")), as_str(where_.get("branch"))
    model = as_str(data.get("selectedModel")) or as_str(data.get("newModel"))
    version = as_str(data.get("copilotVersion"))
    if not (cwd or branch or model or version):
        return []
    return [SessionContext(cwd=cwd, git_branch=branch, model=model, version=version, **common)]


def _title(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    title = as_str(data.get("title"))
    return [SessionTitled(title=clip(title)[0], title_source="ai", **common)] if title else []


def _notice(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    text = (as_str(data.get("message")) or as_str(data.get("error"))
            or as_str(data.get("reason")) or as_str(data.get("agentDisplayName")) or "")
    return [SystemEvent(subtype=as_str(record.get("type")), content=clip(text)[0], **common)]


def _system_prompt(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    content = as_str(data.get("content")) or ""
    return [SystemEvent(subtype="system.message", content=clip(content)[0], **common)]


def _compacted(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    if data.get("success") is False:
        return []
    pre = data.get("preCompactionTokens")
    return [SessionCompacted(trigger=as_str(data.get("trigger")),
                             pre_tokens=pre if type(pre) is int and pre >= 0 else None, **common)]


def _subagent(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    call_id = as_str(data.get("toolCallId"))
    child = as_str(record.get("agentId")) or call_id
    if child is None:
        return []
    return [SubagentLinked(child_agent_id=child, tool_use_id=call_id,
                           **{**common, "agent_id": None})]


# -- conversation ------------------------------------------------------------------------------


def _user(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    text, truncated = clip(as_str(data.get("content")) or "")
    source = as_str(data.get("source")) or ""
    is_meta = (not text.strip() or source.startswith(META_SOURCES)
               or data.get("isAutopilotContinuation") is True
               or text.lstrip().startswith(META_PREFIXES))
    return [UserPrompted(text=text, truncated=truncated, is_meta=is_meta, **common)]


def _assistant(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    key = as_str(data.get("messageId")) or common["line_uuid"] or ""
    model = as_str(data.get("model"))
    text, truncated = clip(as_str(data.get("content")) or "")
    payloads: list[EventPayload] = [AssistantMessage(
        message_key=key, model=model, text=text, truncated=truncated, **common)]
    reasoning = as_str(data.get("reasoningText"))
    if reasoning:
        text, truncated = clip(reasoning)
        payloads.append(AssistantMessage(
            message_key=key, model=model, block_type="thinking", text=text, truncated=truncated,
            **{**common, "line_uuid": f"{key}:reasoning"}))
    requests = data.get("toolRequests")
    for request in requests if isinstance(requests, list) else []:
        if isinstance(request, dict) and isinstance(request.get("toolCallId"), str):
            payloads.extend(_call(request["toolCallId"], as_str(request.get("name")),
                                  request.get("arguments"), key, common))
    return payloads


def _reasoning(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    text, truncated = clip(as_str(data.get("content")) or "")
    key = as_str(data.get("reasoningId")) or common["line_uuid"] or ""
    return [AssistantMessage(message_key=key, block_type="thinking", text=text,
                             truncated=truncated, **common)] if text else []


def _tool_start(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    call_id = as_str(data.get("toolCallId"))
    if call_id is None:
        return []
    return _call(call_id, as_str(data.get("toolName")), data.get("arguments"), None, common)


def _call(call_id: str, name: str | None, arguments: Any, key: str | None,
          common: Common) -> list[EventPayload]:
    args = _arguments(arguments)
    name = name or ""
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=call_id, name=name, input=args,
                                               message_key=key, **common)]
    access = FILE_ACCESS.get(name)
    if name == "str_replace_editor":  # the early CLI's one file tool: command picks the access
        access = "read" if args.get("command") == "view" else "write"
    path = next((as_str(args.get(k)) for k in PATH_KEYS if as_str(args.get(k))), None)
    if access and path:
        payloads.append(FileTouched(path=path, tool=name, access=access, tool_use_id=call_id,
                                    **common))
    return payloads


def _arguments(arguments: Any) -> Obj:
    """Tool arguments as an object: an object passes, a JSON text is decoded, else wrapped."""
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except ValueError:
            return {"arguments": arguments}
        return decoded if isinstance(decoded, dict) else {"arguments": arguments}
    return {} if arguments is None else {"arguments": arguments}


def _tool_done(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    call_id = as_str(data.get("toolCallId"))
    if call_id is None:
        return []
    result, error = as_obj(data.get("result")), as_obj(data.get("error"))
    shown = as_str(result.get("content")) or as_str(error.get("message")) or ""
    if not shown and isinstance(data.get("result"), str):
        shown = data["result"]
    content, truncated = clip(shown)
    return [ToolResulted(tool_use_id=call_id, is_error=data.get("success") is False,
                         content=content, truncated=truncated, **common)]


# -- usage -------------------------------------------------------------------------------------


def _shutdown(data: Obj, record: Obj, common: Common) -> list[EventPayload]:
    """One usage report per model of ``modelMetrics``, keyed ``<event id>:<model>``."""
    event_id = common["line_uuid"] or derive_event_id("copilot-shutdown", json.dumps(data))
    metrics = as_obj(data.get("modelMetrics"))
    payloads: list[EventPayload] = []
    for model in sorted(metrics):
        usage = as_obj(as_obj(metrics[model]).get("usage"))
        read = token_count(usage.get("cacheReadTokens"))
        write = token_count(usage.get("cacheWriteTokens"))
        fresh = max(token_count(usage.get("inputTokens")) - read - write, 0)
        output = token_count(usage.get("outputTokens"))
        if fresh or read or write or output:
            payloads.append(UsageReported(
                message_key=f"{event_id}:{model}", model=model, input_tokens=fresh,
                cache_read_tokens=read, cache_creation_5m_tokens=write, output_tokens=output,
                **{**common, "agent_id": None}))
    return payloads


Handler = Callable[[Obj, Obj, Common], list[EventPayload]]
HANDLERS: dict[str, Handler] = {
    "session.start": _context, "session.resume": _context, "session.model_change": _context,
    "session.context_changed": _context, "session.title_changed": _title,
    "user.message": _user, "assistant.message": _assistant, "assistant.reasoning": _reasoning,
    "tool.execution_start": _tool_start, "tool.execution_complete": _tool_done,
    "subagent.started": _subagent, "session.compaction_complete": _compacted,
    "session.shutdown": _shutdown, "system.message": _system_prompt,
    **dict.fromkeys(NOTICES, _notice),
}


# -- legacy whole-JSON sessions ----------------------------------------------------------------


def derive_snapshot(event: FileChanged) -> list[EventPayload]:
    """The payloads of a legacy ``history-session-state/*.json`` session: its OpenAI-style
    ``chatMessages``, each keyed by its index (the array only grows), with no tokens.

    Raises:
        InvalidEvent: the snapshot was cut at the size limit, or is not a JSON object.
    """
    if event.payload.truncated:
        raise InvalidEvent(f"{where(event)}: legacy session cut at the snapshot size limit")
    document = load_line(event)
    at = parse_time(document.get("startTime"))
    messages = document.get("chatMessages")
    payloads: list[EventPayload] = []
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(message, dict):
            common: Common = {"line_uuid": f"{event.session_id}:{index}", "timestamp": at}
            payloads.extend(_chat_message(message, common))
    return payloads


def _chat_message(message: Obj, common: Common) -> list[EventPayload]:
    role, content = as_str(message.get("role")), message.get("content")
    text, truncated = clip(content if isinstance(content, str) else "")
    if role == "user":
        return [UserPrompted(text=text, truncated=truncated, is_meta=not text.strip(),
                             **common)]
    if role == "tool" and isinstance(message.get("tool_call_id"), str):
        return [ToolResulted(tool_use_id=message["tool_call_id"], content=text,
                             truncated=truncated, **common)]
    if role != "assistant":
        return []
    key = common["line_uuid"]
    payloads: list[EventPayload] = [AssistantMessage(message_key=key, text=text,
                                                     truncated=truncated, **common)]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = as_obj(as_obj(call).get("function"))
        call_id = as_str(as_obj(call).get("id"))
        if call_id:
            payloads.extend(_call(call_id, as_str(function.get("name")),
                                  function.get("arguments"), key, common))
    return payloads
