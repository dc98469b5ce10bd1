"""Gemini CLI chat records -> normalized session events: the pure half of one agent.

This module owns the meaning of every Gemini CLI chat record (session-formats.md section 3.2;
gemini-cli ``chatRecordingTypes.ts``) and maps it onto the payload kinds the Claude parser
emits, so the projections need no Gemini branch. A record is one line of a ``.jsonl``
recording, or the object / one ``messages[]`` element of a legacy single-JSON chat, which the
producer publishes whole as a ``file.snapshot`` (:func:`derive_snapshot`).

Records: the metadata record (``sessionId``, ``projectHash``, ``startTime``, ``directories``,
``summary``, ``kind``) and ``{"$set": {...}}`` updates give context, title and sub-agent facts;
``{"$rewindTo": id}`` is a ``session.rewound`` to that message; ``user`` / ``gemini`` /
``info`` / ``error`` / ``warning`` message records are prompts, replies (text, thoughts, tool
calls with their results, files touched, usage) and system notices. ``$set.messages`` is the
model's context rebuilt after a compression or an aborted turn, not new conversation: its
messages are not re-derived, so compressed or masked copies never overwrite what was said. A
``$rewindTo`` in a sub-agent's file carries the sub-agent's ``agent_id``, so only that
sub-agent's conversation is rewound.

Last write wins. gemini-cli appends a message record again, whole and with the same ``id``,
each time it changes (tool calls added, results in, tokens known), and a resumed legacy chat is
copied into a ``.jsonl`` with the same ids. Every write of one message lands on the same natural
keys: the prompt's and reply's ``line_uuid`` (= ``id``; ``id:thoughts`` for the thoughts
fragment), the reply's ``message_key`` (= ``id``), each call's ``tool_use_id``, and the usage
``message_key`` (= ``id``). The projection keeps the largest usage per key, which is the last
write because a message's tokens only grow (they are written once, when the response is done).

Tokens (rule 7): ``tokens.input`` (promptTokenCount) INCLUDES ``cached``; ``thoughts`` and
``tool`` (toolUsePromptTokenCount) are billed on top. Reported disjoint, Claude-style:
``input_tokens`` = input - cached + tool, ``cache_read_tokens`` = cached, ``output_tokens`` =
output + thoughts, so ``UsageReported.total`` equals ``tokens.total``. ``cached`` larger than
``input`` (a malformed record) is clamped, never negative. A reply without a model reports none;
consumers then bill it as the session's latest model or ``gemini-cli-unknown`` (unpriced, never
$0), see :mod:`projections.session_models`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

from agents.parsers.gemini_content import display_text, file_paths, parts_text, thoughts_text
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
    SessionContext,
    SessionEvent,
    SessionRewound,
    SessionStateReported,
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
from streams.producers.gemini import GeminiProducer

__all__ = ["decide", "derive_snapshot"]


SYSTEM_TYPES = frozenset({"info", "error", "warning"})
# Terminal tool-call states (gemini-cli scheduler ``Status``); earlier ones are not results.
DONE = frozenset({"success", "error", "cancelled"})
FAILED = frozenset({"error", "cancelled"})
FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "read_file": "read", "read_many_files": "read", "write_file": "write", "replace": "write",
    "edit": "write", "smart_edit": "write",
}
# What gemini-cli itself does not count as a prompt (sessionUtils.isIgnoredUserContent).
META_PREFIXES = ("/", "?", "<session_context>", "<hook_context>")


@parses(GeminiProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event of ``gemini-cli`` stands for.

    Pure and deterministic: the same input gives the same events with the same ids
    (``derive_event_id(event.event_id, kind, n)``, ``n`` counting that kind within the event).
    Unknown records become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line or snapshot is not a JSON object, a snapshot was cut short, or
            a payload does not fit the event schemas; the message names the file and line. The
            caller dead-letters the event.
    """
    return decide_lines(event, derive, snapshot=derive_snapshot)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one record (a ``.jsonl`` line, or one legacy ``messages[]`` element)."""
    agent_id = event.payload.agent_id
    update = record.get("$set")
    if isinstance(update, dict):
        return _metadata(update, event)
    target = record.get("$rewindTo")
    if isinstance(target, str):
        return [SessionRewound(to_message_key=target, agent_id=agent_id)]
    kind = record.get("type")
    if isinstance(record.get("id"), str) and isinstance(kind, str):
        handler = MESSAGE_HANDLERS.get(kind)
        if handler is not None:
            common: Common = {"line_uuid": record["id"],
                              "timestamp": parse_time(record.get("timestamp")),
                              "agent_id": agent_id}
            return handler(record, common)
    elif isinstance(record.get("sessionId"), str):
        return _conversation(record, event)
    line_type = f"message/{kind}" if isinstance(kind, str) else None
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=line_type, raw=raw, agent_id=agent_id,
                        line_uuid=derive_event_id("gemini-record", raw))]


def derive_snapshot(event: FileChanged) -> list[EventPayload]:
    """The payloads of a whole legacy chat: its metadata, then every ``messages[]`` element
    mapped exactly as a ``.jsonl`` record would be.

    Raises:
        InvalidEvent: the snapshot was cut at the size limit, or is not a JSON object; the
            message names the file.
    """
    if event.payload.truncated:
        raise InvalidEvent(f"{where(event)}: legacy chat cut at the snapshot size limit, "
                           "not a whole JSON document")
    return _conversation(load_line(event), event)


def _conversation(record: Obj, event: FileChanged) -> list[EventPayload]:
    """A metadata record, and the ``messages[]`` it carries when it is a whole conversation
    (a legacy chat, or one written on a single line)."""
    payloads = _metadata(record, event)
    messages = record.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            payloads.extend(derive(message, event))
    return payloads


# -- metadata ----------------------------------------------------------------------------------


def _metadata(meta: Obj, event: FileChanged) -> list[EventPayload]:
    """Context (cwd = first workspace directory, project = project hash), the summary as a
    title, and the sub-agent flag. ``lastUpdated``-only updates yield nothing."""
    agent_id = event.payload.agent_id
    at = parse_time(meta.get("lastUpdated")) or parse_time(meta.get("startTime"))
    common: Common = {"timestamp": at, "agent_id": agent_id}
    directories = meta.get("directories")
    cwd = as_str(directories[0]) if isinstance(directories, list) and directories else None
    project = as_str(meta.get("projectHash"))
    payloads: list[EventPayload] = []
    if cwd or project:
        payloads.append(SessionContext(cwd=cwd, project=project, **common))
    summary = as_str(meta.get("summary"))
    if summary and summary.strip():
        payloads.append(SessionTitled(title=clip(summary)[0], title_source="summary", **common))
    if meta.get("kind") == "subagent":
        if agent_id is not None:  # filed under its parent: a child of that session
            payloads.append(SubagentLinked(child_agent_id=agent_id, **common))
        else:  # a sub-agent recording read as a session of its own
            payloads.append(SessionStateReported(facet="metadata", session_type="subagent",
                                                 updated_at=at, **common))
    return payloads


# -- messages ----------------------------------------------------------------------------------


def _user(record: Obj, common: Common) -> list[EventPayload]:
    shown = record.get("displayContent")
    text, truncated = clip(parts_text(shown if shown else record.get("content")))
    is_meta = not text.strip() or text.lstrip().startswith(META_PREFIXES)
    return [UserPrompted(text=text, truncated=truncated, is_meta=is_meta, **common)]


def _gemini(record: Obj, common: Common) -> list[EventPayload]:
    """Reply text, thoughts, tool calls with results and files, and usage, all keyed by ``id``.
    """
    key, model = record["id"], as_str(record.get("model"))
    text, truncated = clip(parts_text(record.get("content")))
    payloads: list[EventPayload] = [AssistantMessage(
        message_key=key, model=model, text=text, truncated=truncated, **common)]
    thoughts = thoughts_text(record.get("thoughts"))
    if thoughts:
        text, truncated = clip(thoughts)
        payloads.append(AssistantMessage(
            message_key=key, model=model, block_type="thinking", text=text, truncated=truncated,
            **{**common, "line_uuid": f"{key}:thoughts"}))
    calls = record.get("toolCalls")
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            payloads.extend(_tool_call(call, key, common))
    payloads.extend(_usage(as_obj(record.get("tokens")), key, model, common))
    return payloads


def _tool_call(call: Obj, key: str, common: Common) -> list[EventPayload]:
    tool_use_id, name = call["id"], as_str(call.get("name")) or ""
    args = as_obj(call.get("args"))
    at = parse_time(call.get("timestamp")) or common["timestamp"]
    own = {**common, "timestamp": at}
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name, input=args,
                                               message_key=key, **own)]
    access = FILE_ACCESS.get(name)
    if access:
        payloads.extend(FileTouched(path=path, tool=name, access=access,
                                    tool_use_id=tool_use_id, **own)
                        for path in file_paths(args))
    status = as_str(call.get("status"))
    if status in DONE:
        shown = call.get("resultDisplay")
        content, truncated = clip(display_text(shown) if shown else parts_text(call.get("result")))
        payloads.append(ToolResulted(tool_use_id=tool_use_id, is_error=status in FAILED,
                                     content=content, truncated=truncated, **own))
    return payloads


def _usage(tokens: Obj, key: str, model: str | None, common: Common) -> list[EventPayload]:
    given = token_count(tokens.get("input"))
    cached = min(token_count(tokens.get("cached")), given)
    fresh = given - cached + token_count(tokens.get("tool"))
    output = token_count(tokens.get("output")) + token_count(tokens.get("thoughts"))
    if not (fresh or cached or output):
        return []
    return [UsageReported(message_key=key, model=model, input_tokens=fresh,
                          cache_read_tokens=cached, output_tokens=output, **common)]


def _system(record: Obj, common: Common) -> list[EventPayload]:
    return [SystemEvent(subtype=as_str(record.get("type")),
                        content=clip(parts_text(record.get("content")))[0], **common)]


MESSAGE_HANDLERS: dict[str, Callable[[Obj, Common], list[EventPayload]]] = {
    "user": _user, "gemini": _gemini, **dict.fromkeys(SYSTEM_TYPES, _system),
}
