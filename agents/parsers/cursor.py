"""Cursor agent CLI chats and transcripts -> normalized session events: the pure half.

Two record shapes arrive (:mod:`streams.producers.cursor`): from a chat's ``store.db`` the meta
(``{"cursorMeta": {...}}``: title ``name``, ``lastUsedModel``) and one message blob
(``{"blobId", "message": {role, content}}``, AI-SDK parts ``text`` / ``reasoning`` /
``tool-call`` / ``tool-result``); from an agent transcript one Claude-style line
(``{role, message: {content}}``, parts ``text`` / ``thinking`` / ``tool_use`` /
``tool_result``), and roleless status lines (``turn_ended``), which give nothing.

Trap: a chat of the CLI is written twice, as blobs and as a transcript of the same id, so both
land in one session and must meet on the same keys. Neither carries message ids (every stored
assistant message has ``"id": "1"``) nor per-message times, so a prompt is keyed by a digest of
its query (the text inside ``<user_query>``, without the ``<user_info>`` context the store adds)
and a reply by a digest of its text; tool calls by their ``toolCallId`` / ``tool_use`` id (a
transcript call without one by a digest of name and input). A prompt repeated verbatim in one
chat therefore counts once. The first line of a sub-agent transcript links the sub-agent.

Tokens: none. Cursor keeps usage server side; the store's only counts are the current context's
composition in a protobuf tree blob, not billed tokens. No ``UsageReported`` is emitted; the
model (``lastUsedModel``, ``providerOptions.cursor.modelName``) is reported as context.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from agents.parsers.lines import (
    MAX_RAW_CHARS,
    Common,
    Obj,
    as_obj,
    as_str,
    blocks_text,
    clip,
    decide_lines,
    parse_time,
)
from agents.parsers.registry import parses
from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    EventPayload,
    FileTouched,
    SessionContext,
    SessionEvent,
    SessionTitled,
    SubagentLinked,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.producers.cursor import CursorProducer

__all__ = ["decide", "derive"]

FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "read": "read", "readfile": "read", "read_file": "read", "write": "write",
    "edit": "write", "strreplace": "write", "multiedit": "write", "applypatch": "write",
    "delete": "write", "editnotebook": "write", "search_replace": "write",
}
PATH_KEYS = ("path", "file_path", "target_file", "filePath")
QUERY = re.compile(r"<user_query>\s*(.*?)\s*</user_query>", re.S)
STAMP = re.compile(r"<timestamp>\s*(.*?)\s*</timestamp>", re.S)
STATUS_LINES = frozenset({"turn_ended", "turn_started"})
DEFAULT_TITLES = frozenset({"", "New Agent", "Untitled"})


@parses(CursorProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events of one ``sessions.file-changes.v1`` event of ``cursor``.

    Pure and deterministic. Unknown records become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object or a payload does not fit the schemas.
    """
    return decide_lines(event, derive)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one store record or transcript line."""
    agent_id = event.payload.agent_id
    if isinstance(record.get("cursorMeta"), dict):
        return _meta(record["cursorMeta"], event)
    message = as_obj(record.get("message"))
    role = as_str(message.get("role")) or as_str(record.get("role"))
    payloads: list[EventPayload] = []
    if agent_id is not None and event.payload.line_no == 1:
        payloads.append(SubagentLinked(child_agent_id=agent_id))
    content = message.get("content")
    if role == "user":
        return payloads + _user(content, agent_id)
    if role == "assistant":
        return payloads + _assistant(content, agent_id)
    if role == "tool":
        return payloads + _results(content, agent_id)
    if role == "system" or record.get("type") in STATUS_LINES:
        return payloads
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return payloads + [UnknownLine(line_type=as_str(record.get("type")) or role, raw=raw,
                                   agent_id=agent_id,
                                   line_uuid=derive_event_id("cursor-record", raw))]


def _meta(meta: Obj, event: FileChanged) -> list[EventPayload]:
    common: Common = {"timestamp": parse_time(meta.get("createdAt"))}
    model = as_str(meta.get("lastUsedModel"))
    project = event.payload.path.replace("\\", "/").rsplit("/", 3)[-3]  # chats/<hash>/<id>/
    payloads: list[EventPayload] = [SessionContext(model=model, project=project, **common)]
    name = (as_str(meta.get("name")) or "").strip()
    if name not in DEFAULT_TITLES:
        payloads.append(SessionTitled(title=clip(name)[0], title_source="ai", **common))
    return payloads


def _key(prefix: str, *parts: str) -> str:
    joined = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return f"{prefix}:{hashlib.sha256(joined).hexdigest()[:20]}"


def _parts(content: Any) -> list[Obj]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [part for part in content if isinstance(part, dict)] if isinstance(content,
                                                                                list) else []


def _user(content: Any, agent_id: str | None) -> list[EventPayload]:
    """A prompt keyed by its query; a message with no ``<user_query>`` and only context tags
    is meta. Tool results sent back as a user turn (transcripts) are results."""
    parts = _parts(content)
    results = [p for p in parts if p.get("type") == "tool_result"]
    raw = "\n".join(as_str(p.get("text")) or "" for p in parts if p.get("type") == "text")
    payloads = _results(results, agent_id) if results else []
    if not raw.strip():
        return payloads
    found = QUERY.search(raw)
    query = found[1] if found else raw.strip()
    is_meta = found is None and raw.lstrip().startswith("<")
    stamp = STAMP.search(raw)
    text, truncated = clip(query)
    common: Common = {"line_uuid": _key(f"prompt:{agent_id or ''}", query),
                      "timestamp": parse_time(stamp[1]) if stamp else None,
                      "agent_id": agent_id}
    return payloads + [UserPrompted(text=text, truncated=truncated, is_meta=is_meta, **common)]


def _assistant(content: Any, agent_id: str | None) -> list[EventPayload]:
    parts = _parts(content)
    text = "\n".join(as_str(p.get("text")) or "" for p in parts if p.get("type") == "text")
    calls = [p for p in parts if p.get("type") in ("tool-call", "tool_use")]
    thinking = "\n".join(as_str(p.get("text")) or as_str(p.get("thinking")) or ""
                         for p in parts if p.get("type") in ("reasoning", "thinking"))
    model = next((m for p in parts if (m := as_str(as_obj(as_obj(
        p.get("providerOptions")).get("cursor")).get("modelName")))), None)
    key = _key("reply", text) if text.strip() else _key("reply", *map(_call_id, calls))
    common: Common = {"agent_id": agent_id}
    body, truncated = clip(text)
    payloads: list[EventPayload] = [AssistantMessage(
        message_key=key, model=model, text=body, truncated=truncated,
        line_uuid=f"{key}:text", **common)]
    if thinking.strip() and thinking.strip() != "[REDACTED]":
        body, truncated = clip(thinking)
        payloads.append(AssistantMessage(message_key=key, model=model, block_type="thinking",
                                         text=body, truncated=truncated,
                                         line_uuid=f"{key}:thinking", **common))
    if model:
        payloads.append(SessionContext(model=model, **common))
    for call in calls:
        payloads.extend(_call(call, key, common))
    return payloads


def _call_id(call: Obj) -> str:
    given = as_str(call.get("toolCallId")) or as_str(call.get("id"))
    if given:
        return given
    name = as_str(call.get("toolName")) or as_str(call.get("name")) or ""
    return _key("tool", name, json.dumps(_input(call), sort_keys=True, ensure_ascii=False))


def _input(call: Obj) -> Obj:
    return as_obj(call.get("args")) or as_obj(call.get("input"))


def _call(call: Obj, key: str, common: Common) -> list[EventPayload]:
    call_id, args = _call_id(call), _input(call)
    name = as_str(call.get("toolName")) or as_str(call.get("name")) or ""
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=call_id, name=name, input=args,
                                               message_key=key, line_uuid=call_id, **common)]
    access = FILE_ACCESS.get(name.lower())
    path = next((as_str(args.get(k)) for k in PATH_KEYS if as_str(args.get(k))), None)
    if access and path:
        payloads.append(FileTouched(path=path, tool=name, access=access, tool_use_id=call_id,
                                    line_uuid=f"{call_id}:file", **common))
    return payloads


def _results(content: Any, agent_id: str | None) -> list[EventPayload]:
    payloads: list[EventPayload] = []
    for part in _parts(content):
        call_id = as_str(part.get("toolCallId")) or as_str(part.get("tool_use_id"))
        if part.get("type") not in ("tool-result", "tool_result") or not call_id:
            continue
        failed = part.get("isError") is True or part.get("is_error") is True
        body, truncated = clip(blocks_text(part.get("result", part.get("content"))))
        payloads.append(ToolResulted(tool_use_id=call_id, is_error=failed, content=body,
                                     truncated=truncated, agent_id=agent_id,
                                     line_uuid=f"{call_id}:result"))
    return payloads


