"""OpenCode records -> normalized session events: the pure half of one agent.

A record is a session, a message or a part of OpenCode (``session/message-v2.ts``), read from
its database or its legacy JSON files by :mod:`streams.producers.opencode`, which rebuilds each
row as the legacy file's JSON object and adds ``_role`` / ``_model`` (the message's) to parts.
Sessions give context and titles (and, for sub-agent sessions, ``subagent.linked``); assistant
messages give the model, the working directory and the usage; parts give the conversation:
``text`` (a prompt in a user message, ``synthetic`` ones are meta; a reply in an assistant
message), ``reasoning`` (thinking), ``tool`` (the call, its result once ``completed`` or
``error``, the files read or written, the sub-agent a ``task`` call started), ``step-finish``
(usage) and ``compaction``.

Last write wins. OpenCode rewrites a row or file whole each time it changes (a streaming text
part, a tool going pending -> running -> completed, a message's tokens when its step ends), and
its JSON migration copies every legacy file into the database with the same ids. Every version
lands on the same natural keys: ``line_uuid`` = the part id, ``message_key`` = the message id,
``tool_use_id`` = the call id, the usage ``message_key`` = the message id.

Tokens (``session/index.ts`` ``getUsage``): ``tokens.input`` is already the fresh input (OpenCode
subtracts cache reads and writes from the provider's count), ``cache.read`` / ``cache.write``
the cache reads and writes, ``output`` the completion WITHOUT ``reasoning`` (OpenCode bills
reasoning on top at the output rate). Reported disjoint: ``input_tokens`` = input,
``cache_read_tokens`` = cache.read, ``cache_creation_5m_tokens`` = cache.write,
``output_tokens`` = output + reasoning, except when the record's own ``total`` shows reasoning
already inside output (input + output + cache = total), then output alone. The trap: a message's
``tokens`` and its ``step-finish`` part report the same step (OpenCode writes both at the end of
a step); both are keyed by the message id, so the projection's largest-per-key rule counts the
step once. ``cost`` is not carried: the projections price tokens themselves.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Literal

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
from streams.producers.opencode import OpenCodeProducer

__all__ = ["decide"]

FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "read": "read", "write": "write", "edit": "write", "multiedit": "write",
}
DONE = frozenset({"completed", "error"})
# Part types that carry nothing the events model (step boundaries, snapshots, attachments).
SILENT_PARTS = frozenset({"step-start", "snapshot", "patch", "file", "agent", "retry",
                          "subtask"})
# The titles OpenCode gives a session before its title model names it.
DEFAULT_TITLE = re.compile(r"^(?:New session|Child session) - \d{4}-\d{2}-\d{2}T")


@parses(OpenCodeProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event of ``opencode`` stands for.

    Pure and deterministic: the same input gives the same events with the same ids. Unknown
    records become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the record is not a JSON object, or a payload does not fit the event
            schemas; the message names the file. The caller dead-letters the event.
    """
    return decide_lines(event, derive, time_of=_time_of)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one session, message or part record."""
    agent_id = event.payload.agent_id
    if isinstance(record.get("role"), str):
        return _message(record, agent_id)
    if isinstance(record.get("messageID"), str) and isinstance(record.get("type"), str):
        return _part(record, agent_id)
    if isinstance(record.get("id"), str) and ("directory" in record or "projectID" in record):
        return _session(record, agent_id)
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=as_str(record.get("type")), raw=raw, agent_id=agent_id,
                        line_uuid=derive_event_id("opencode-record", raw))]


def _time_of(record: Obj) -> datetime | None:
    """When a record happened: its start or creation time (epoch ms), else its last update."""
    time = as_obj(record.get("time")) or as_obj(as_obj(record.get("state")).get("time"))
    return parse_time(time.get("start") or time.get("created") or time.get("end")
                      or time.get("completed") or time.get("updated"))


# -- sessions and messages ---------------------------------------------------------------------


def _session(record: Obj, agent_id: str | None) -> list[EventPayload]:
    """A main session's directory, project, version and title; a sub-agent session's link."""
    common: Common = {"timestamp": _time_of(record), "agent_id": agent_id}
    if agent_id is not None:  # filed under its root session: say it is a sub-agent there
        return [SubagentLinked(child_agent_id=agent_id, **common)]
    payloads: list[EventPayload] = [SessionContext(
        cwd=as_str(record.get("directory")), project=as_str(record.get("projectID")),
        version=as_str(record.get("version")), **common)]
    title = as_str(record.get("title"))
    if title and title.strip() and not DEFAULT_TITLE.match(title):
        payloads.append(SessionTitled(title=clip(title)[0], title_source="ai", **common))
    return payloads


def _message(record: Obj, agent_id: str | None) -> list[EventPayload]:
    """An assistant message's model, working directory, error and usage; user messages carry
    nothing their parts do not."""
    if record.get("role") != "assistant" or not isinstance(record.get("id"), str):
        return []
    key, model = record["id"], as_str(record.get("modelID"))
    common: Common = {"timestamp": _time_of(record), "agent_id": agent_id}
    payloads: list[EventPayload] = []
    cwd = as_str(as_obj(record.get("path")).get("cwd"))
    if agent_id is None and (cwd or model):
        payloads.append(SessionContext(cwd=cwd, model=model, **common))
    error = as_obj(record.get("error"))
    if error:
        text = as_str(as_obj(error.get("data")).get("message")) or as_str(error.get("name"))
        payloads.append(SystemEvent(subtype="error", content=clip(text or "")[0],
                                    line_uuid=f"{key}:error", **common))
    payloads.extend(_usage(as_obj(record.get("tokens")), key, model, common))
    return payloads


def _usage(tokens: Obj, key: str, model: str | None, common: Common) -> list[EventPayload]:
    fresh, output = token_count(tokens.get("input")), token_count(tokens.get("output"))
    reasoning = token_count(tokens.get("reasoning"))
    cache = as_obj(tokens.get("cache"))
    read, write = token_count(cache.get("read")), token_count(cache.get("write"))
    total = tokens.get("total")
    inside = type(total) is int and reasoning > 0 and total == fresh + output + read + write
    output += 0 if inside else reasoning
    if not (fresh or output or read or write):
        return []
    return [UsageReported(message_key=key, model=model, input_tokens=fresh,
                          output_tokens=output, cache_read_tokens=read,
                          cache_creation_5m_tokens=write, **common)]


# -- parts -------------------------------------------------------------------------------------


def _part(record: Obj, agent_id: str | None) -> list[EventPayload]:
    kind, key = record["type"], record["messageID"]
    common: Common = {"line_uuid": as_str(record.get("id")), "timestamp": _time_of(record),
                      "agent_id": agent_id}
    role, model = as_str(record.get("_role")), as_str(record.get("_model"))
    if kind in ("text", "reasoning"):
        return _text(record, kind, key, role, model, common)
    if kind == "tool":
        return _tool(record, key, common)
    if kind == "step-finish":
        return _usage(as_obj(record.get("tokens")), key, model, common)
    if kind == "compaction":
        trigger = "auto" if record.get("auto") is True else "manual"
        return [SessionCompacted(trigger=trigger, **common)]
    if kind in SILENT_PARTS:
        return []
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=f"part/{kind}", raw=raw, **common)]


def _text(record: Obj, kind: str, key: str, role: str | None, model: str | None,
          common: Common) -> list[EventPayload]:
    text, truncated = clip(as_str(record.get("text")) or "")
    if role == "user" and kind == "text":
        meta = record.get("synthetic") is True or record.get("ignored") is True
        return [UserPrompted(text=text, is_meta=meta, truncated=truncated, **common)]
    if not text.strip():
        return []
    block = "thinking" if kind == "reasoning" else "text"
    return [AssistantMessage(message_key=key, model=model, block_type=block, text=text,
                             truncated=truncated, **common)]


def _tool(record: Obj, key: str, common: Common) -> list[EventPayload]:
    call_id, name = as_str(record.get("callID")), as_str(record.get("tool")) or ""
    if not call_id:
        return []
    state = as_obj(record.get("state"))
    args = as_obj(state.get("input"))
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=call_id, name=name, input=args,
                                               message_key=key, **common)]
    access, path = FILE_ACCESS.get(name), as_str(args.get("filePath"))
    if access and path:
        payloads.append(FileTouched(path=path, tool=name, access=access, tool_use_id=call_id,
                                    **common))
    child = as_str(as_obj(state.get("metadata")).get("sessionId"))
    if name == "task" and child:
        payloads.append(SubagentLinked(child_agent_id=child, tool_use_id=call_id, **common))
    status = as_str(state.get("status"))
    if status in DONE:
        failed = status == "error"
        shown = state.get("error") if failed else state.get("output")
        content, truncated = clip(shown if isinstance(shown, str) else "")
        payloads.append(ToolResulted(tool_use_id=call_id, is_error=failed, content=content,
                                     truncated=truncated, **common))
    return payloads
