"""Qwen Code chat records -> normalized session events: the pure half of one agent.

One line of ``chats/<sessionId>.jsonl`` is one ``ChatRecord`` (qwen-code
``chatRecordingService.ts``): ``uuid``, ``parentUuid``, ``sessionId``, ``timestamp``, ``cwd``,
``version``, ``gitBranch``, ``type`` and, by type, a Gemini ``Content`` ``message``:

- ``user``: the prompt (``systemPayload.displayText`` is what was typed, before ``@file``
  expansion). Subtypes ``notification`` / ``cron`` / ``goal_runtime`` are injected, ``is_meta``.
- ``assistant``: one model response: text parts, ``thought`` parts (thinking), ``functionCall``
  parts (tool calls, files touched), ``model`` and ``usageMetadata``; keyed by ``uuid``.
- ``tool_result``: ``functionResponse`` parts with ``toolCallResult.status``.
- ``system``: ``custom_title`` (a title), ``chat_compression`` (a compaction), ``slash_command``
  (a meta prompt), ``rewind``, ``agent_session_ready`` (a sub-agent's link to its call), others
  as system events. ``ui_telemetry`` repeats every API response's token counts (and every tool
  call) for the ``/stats`` replay: it yields nothing, or tokens would count twice.

Tokens. ``usageMetadata`` is Gemini-shaped but filled by Qwen Code's converters: from an
OpenAI-compatible API (the default: Qwen OAuth, DashScope, OpenRouter...)
``promptTokenCount`` = ``prompt_tokens`` INCLUDING ``cachedContentTokenCount``,
``candidatesTokenCount`` = ``completion_tokens`` INCLUDING reasoning, ``thoughtsTokenCount`` the
reasoning part of it, ``totalTokenCount`` = prompt + candidates; from Anthropic the prompt sums
fresh, cache-read and cache-write tokens (the write is not told apart) and total = prompt +
candidates; from Gemini's own API thoughts (and ``toolUsePromptTokenCount``) come on top, and
total says so. Mapped disjoint: ``input_tokens`` = prompt - cached + toolUse,
``cache_read_tokens`` = cached, ``output_tokens`` = candidates, plus thoughts only when the total
shows them billed on top. Then the buckets sum to ``totalTokenCount``. A record without a model
reports ``model=None`` (billed as the session's latest model, or unpriced).

Traps. Every record is written once with a fresh ``uuid`` (no rewrites); ``/resume`` appends to
the same file. ``/branch`` copies records verbatim into a new session, same ``uuid`` and
timestamps, with ``forkedFrom.sessionId``: reported as ``SessionContext.forked_from``, so the
stores give the copied prefix to the parent (same usage keys). ``chat_compression`` carries the
rebuilt model history (``compressedHistory``), not new conversation: only the compaction is
reported. ``rewind`` re-roots the ``parentUuid`` chain; a line alone cannot say which message was
the first dropped, so it is a system event and the abandoned branch stays (its usage was billed).
Sub-agent records (``agentId``, ``isSidechain``) keep their ``agent_id``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import PurePath
from typing import Literal

from agents.parsers.gemini_content import display_text, file_paths, parts_text
from agents.parsers.lines import (
    MAX_RAW_CHARS,
    Common,
    Obj,
    as_obj,
    as_str,
    clip,
    decide_lines,
    parse_time,
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
from streams.producers.qwen_code import QwenCodeProducer

__all__ = ["decide", "usage_of"]

FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "read_file": "read", "read_many_files": "read", "write_file": "write", "edit": "write",
    "replace": "write",
}
FAILED = frozenset({"error", "cancelled"})
META_SUBTYPES = frozenset({"notification", "cron", "goal_runtime", "background_task_completed"})
META_PREFIXES = ("/", "<system-reminder>", "<session_context>")
SILENT_SUBTYPES = frozenset({"ui_telemetry", "attribution_snapshot", "file_history_snapshot",
                             "session_notes", "user_text_elements"})


@parses(QwenCodeProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event of ``qwen-code`` stands for.

    Pure and deterministic (ids derive from the input event). Unknown records become
    ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object, or a payload does not fit the schemas.
    """
    return decide_lines(event, derive)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one chat record."""
    kind, uuid = record.get("type"), record.get("uuid")
    handler = HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is None or not isinstance(uuid, str):
        return [_unknown(record, event)]
    agent_id = event.payload.agent_id or as_str(record.get("agentId"))
    common: Common = {"line_uuid": uuid, "timestamp": parse_time(record.get("timestamp")),
                      "agent_id": agent_id, "is_sidechain": record.get("isSidechain") is True}
    return _lineage(record, common) + handler(record, common, event)


def _lineage(record: Obj, common: Common) -> list[EventPayload]:
    """A ``/branch`` copy names its parent on every copied record."""
    parent = as_str(as_obj(record.get("forkedFrom")).get("sessionId"))
    if parent is None or common["agent_id"]:
        return []
    return [SessionContext(forked_from=parent, **_plain(common))]


def _user(record: Obj, common: Common, event: FileChanged) -> list[EventPayload]:
    shown = as_str(as_obj(record.get("systemPayload")).get("displayText"))
    text, truncated = clip(shown or parts_text(as_obj(record.get("message")).get("parts")))
    is_meta = (record.get("subtype") in META_SUBTYPES or not text.strip()
               or text.lstrip().startswith(META_PREFIXES))
    payloads: list[EventPayload] = []
    if common["agent_id"]:
        payloads.append(SubagentLinked(child_agent_id=common["agent_id"], **_plain(common)))
    else:
        payloads.append(_context(record, common, event))
    payloads.append(UserPrompted(text=text, truncated=truncated, is_meta=is_meta, **common))
    return payloads


def _context(record: Obj, common: Common, event: FileChanged) -> SessionContext:
    """cwd, branch and CLI version of the record; project = the project folder's name."""
    path = PurePath(event.payload.path)
    project = path.parent.parent.name if path.parent.name == "chats" else None
    return SessionContext(cwd=as_str(record.get("cwd")), git_branch=as_str(record.get("gitBranch")),
                          version=as_str(record.get("version")), project=project or None,
                          **_plain(common))


def _assistant(record: Obj, common: Common, event: FileChanged) -> list[EventPayload]:
    """Reply text, thinking, tool calls with their files, and usage, keyed by ``uuid``."""
    key, model = common["line_uuid"], as_str(record.get("model"))
    parts = as_obj(record.get("message")).get("parts")
    parts = [as_obj(p) for p in parts] if isinstance(parts, list) else []
    payloads: list[EventPayload] = []
    if model and not common["agent_id"]:
        payloads.append(SessionContext(model=model, **_plain(common)))
    text, truncated = clip("".join(p["text"] for p in parts if _is_text(p, thought=False)))
    payloads.append(AssistantMessage(message_key=key, model=model, text=text,
                                     truncated=truncated, **common))
    thinking = "".join(p["text"] for p in parts if _is_text(p, thought=True))
    if thinking:
        text, truncated = clip(thinking)
        payloads.append(AssistantMessage(
            message_key=key, model=model, block_type="thinking", text=text, truncated=truncated,
            **{**common, "line_uuid": f"{key}:thinking"}))
    for index, part in enumerate(parts):
        call = as_obj(part.get("functionCall"))
        if call:
            payloads.extend(_tool_call(call, f"{key}:call{index}", key, common))
    usage = usage_of(as_obj(record.get("usageMetadata")), key, model, common)
    return payloads + ([usage] if usage else [])


def _is_text(part: Obj, thought: bool) -> bool:
    return isinstance(part.get("text"), str) and (part.get("thought") is True) is thought


def _tool_call(call: Obj, fallback_id: str, key: str, common: Common) -> list[EventPayload]:
    tool_use_id = as_str(call.get("id")) or fallback_id
    name, args = as_str(call.get("name")) or "", as_obj(call.get("args"))
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name, input=args,
                                               message_key=key, **common)]
    access = FILE_ACCESS.get(name)
    if access:
        payloads.extend(FileTouched(path=path, tool=name, access=access,
                                    tool_use_id=tool_use_id, **common)
                        for path in file_paths(args))
    return payloads


def usage_of(usage: Obj, key: str, model: str | None, common: Common) -> UsageReported | None:
    """``usageMetadata`` as disjoint buckets (module docstring); None when it holds nothing."""
    prompt = token_count(usage.get("promptTokenCount"))
    cached = min(token_count(usage.get("cachedContentTokenCount")), prompt)
    tool = token_count(usage.get("toolUsePromptTokenCount"))
    output = token_count(usage.get("candidatesTokenCount"))
    thoughts = token_count(usage.get("thoughtsTokenCount"))
    if thoughts and token_count(usage.get("totalTokenCount")) >= prompt + tool + output + thoughts:
        output += thoughts  # Gemini's own API: thoughts billed on top of the candidates
    fresh = prompt - cached + tool
    if not (fresh or cached or output):
        return None
    return UsageReported(message_key=key, model=model, input_tokens=fresh,
                         cache_read_tokens=cached, output_tokens=output, **common)


def _tool_result(record: Obj, common: Common, event: FileChanged) -> list[EventPayload]:
    status = as_obj(record.get("toolCallResult"))
    parts = as_obj(record.get("message")).get("parts")
    payloads: list[EventPayload] = []
    for part in parts if isinstance(parts, list) else []:
        answer = as_obj(as_obj(part).get("functionResponse"))
        tool_use_id = as_str(answer.get("id")) or as_str(status.get("callId"))
        if tool_use_id is None:
            continue
        failed = (status.get("status") in FAILED or status.get("error") is not None
                  or "error" in as_obj(answer.get("response")))
        shown = status.get("resultDisplay")
        content, truncated = clip(display_text(shown) if shown else parts_text(part))
        payloads.append(ToolResulted(tool_use_id=tool_use_id, is_error=failed, content=content,
                                     truncated=truncated, **common))
    return payloads


def _system(record: Obj, common: Common, event: FileChanged) -> list[EventPayload]:
    subtype, body = as_str(record.get("subtype")), as_obj(record.get("systemPayload"))
    if subtype in SILENT_SUBTYPES:
        return []
    special = SYSTEM_HANDLERS.get(subtype or "")
    if special is not None:
        return special(body, common)
    return [SystemEvent(subtype=subtype, content=clip(parts_text(
        as_obj(record.get("message")).get("parts")))[0], **common)]


def _title(body: Obj, common: Common) -> list[EventPayload]:
    title = as_str(body.get("customTitle"))
    if not title or not title.strip():
        return []
    source: Literal["ai", "custom"] = "ai" if body.get("titleSource") == "auto" else "custom"
    return [SessionTitled(title=clip(title)[0], title_source=source, **common)]


def _compression(body: Obj, common: Common) -> list[EventPayload]:
    info = as_obj(body.get("info"))
    before = info.get("originalTokenCount")
    return [SessionCompacted(trigger=as_str(info.get("compressionStatus")),
                             pre_tokens=token_count(before) if before is not None else None,
                             **common)]


def _slash(body: Obj, common: Common) -> list[EventPayload]:
    command = as_str(body.get("rawCommand"))
    if body.get("phase") != "invocation" or not command:
        return []
    return [UserPrompted(text=clip(command)[0], is_meta=True, **common)]


def _agent_ready(body: Obj, common: Common) -> list[EventPayload]:
    agent_id = common["agent_id"]
    if not agent_id:
        return [SystemEvent(subtype="agent_session_ready", **common)]
    return [SubagentLinked(child_agent_id=agent_id, tool_use_id=as_str(body.get("callId")),
                           **_plain(common))]


def _plain(common: Common) -> Common:
    """``common`` without the line's uuid, for facts that are not a conversation node."""
    return {**common, "line_uuid": None}


def _unknown(record: Obj, event: FileChanged) -> UnknownLine:
    kind = record.get("type")
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return UnknownLine(line_type=kind if isinstance(kind, str) else None, raw=raw,
                       agent_id=event.payload.agent_id,
                       line_uuid=derive_event_id("qwen-record", raw))


HANDLERS: dict[str, Callable[[Obj, Common, FileChanged], list[EventPayload]]] = {
    "user": _user, "assistant": _assistant, "tool_result": _tool_result, "system": _system,
}
SYSTEM_HANDLERS: dict[str, Callable[[Obj, Common], list[EventPayload]]] = {
    "custom_title": _title, "chat_compression": _compression, "slash_command": _slash,
    "agent_session_ready": _agent_ready,
}
