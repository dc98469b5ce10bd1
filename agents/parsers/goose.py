"""goose records -> normalized session events: the pure half of one agent.

A record is a row of ``sessions.db`` (``_table``: ``sessions`` or ``messages``, rebuilt by
:mod:`streams.producers.goose`) or a line of a legacy ``<id>.jsonl`` session (line 1 the
session metadata, then messages). Both message forms are goose's ``Message`` (``role``,
``created`` in epoch seconds, ``content[]``, ``metadata``); content items are ``text``,
``thinking`` / ``redactedThinking``, ``toolRequest`` (``toolCall.value`` = name and arguments)
and ``toolResponse`` (``toolResult.value`` = the content list, or a ``CallToolResult`` with
``content`` and ``isError``), carried by user messages in goose.

Natural keys. goose has no stable message id across its two stores (the database numbers rows,
a legacy line has none, a conversation replaced after a compaction is deleted and re-inserted,
and the legacy file is rewritten whole so its offsets move), so a message is keyed by what it
says: ``<created>:<role>:<digest of its texts and tool ids>``; tool calls by their ``id``. The
same message read from the legacy file, from its database import or from a re-inserted row
lands on the same keys.

Tokens (``agents/agent.rs`` ``update_session_metrics``; ``providers/formats``): goose keeps
usage per SESSION, not per message. ``accumulated_input_tokens`` / ``accumulated_output_tokens``
add every provider call of the session, across every run and resume of it (goose reads the row
and adds); ``input_tokens`` / ``output_tokens`` / ``total_tokens`` are the LAST call only (the
context size). goose's input INCLUDES cache reads and writes (its Anthropic format adds them to
the input; OpenAI's prompt tokens include cached ones) and no split is stored, so
``input_tokens`` = accumulated input (cache fields 0) and ``output_tokens`` = accumulated output
(reasoning included, as the providers count it). One ``UsageReported`` per session, keyed
``session:<id>``: the counters only grow, so the largest report is the latest, and the legacy
file and its database import (same session id) count once. A session written before goose kept
accumulated counters reports its last call's counts, the only ones on disk. The model is the
session's ``model_config.model_name`` (newer schemas), else none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

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
    SessionContext,
    SessionEvent,
    SessionStateReported,
    SessionTitled,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UsageReported,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.producers.goose import GooseProducer

__all__ = ["decide"]

EDITOR_TOOLS = frozenset({"developer__text_editor", "text_editor"})
READ_COMMANDS = frozenset({"view"})


@parses(GooseProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event of ``goose`` stands for.

    Pure and deterministic. Unknown records become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the record is not a JSON object, or a payload does not fit the event
            schemas; the message names the file and line. The caller dead-letters the event.
    """
    return decide_lines(event, derive, time_of=_time_of)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one session record (a row, or a legacy file's first line) or message."""
    if isinstance(record.get("role"), str) and isinstance(record.get("content"), list):
        return _message(record)
    if record.get("_table") == "sessions" or "working_dir" in record or (
            "description" in record and "message_count" in record):
        return _session(record, event.session_id)
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=as_str(record.get("_table")), raw=raw,
                        line_uuid=derive_event_id("goose-record", raw))]


def _time_of(record: Obj) -> datetime | None:
    created = record.get("created")
    if type(created) is int and created > 0:
        return parse_time(created * 1000)
    return parse_time(record.get("updated_at"))


# -- sessions ----------------------------------------------------------------------------------


def _session(record: Obj, session_id: str) -> list[EventPayload]:
    """Context, title, sub-agent flag and the session's usage."""
    at = parse_time(record.get("updated_at")) or parse_time(record.get("created_at"))
    common: Common = {"timestamp": at}
    model = as_str(as_obj(record.get("model_config")).get("model_name"))
    payloads: list[EventPayload] = [SessionContext(cwd=as_str(record.get("working_dir")),
                                                   model=model, **common)]
    title = as_str(record.get("name")) or as_str(record.get("description"))
    if title and title.strip():
        source: Literal["ai", "custom"] = "custom" if record.get("user_set_name") else "ai"
        payloads.append(SessionTitled(title=clip(title)[0], title_source=source, **common))
    if record.get("session_type") == "sub_agent":
        payloads.append(SessionStateReported(facet="metadata", session_type="subagent",
                                             updated_at=at, **common))
    payloads.extend(_usage(record, session_id, model, common))
    return payloads


def _usage(record: Obj, session_id: str, model: str | None,
           common: Common) -> list[EventPayload]:
    accumulated = [record.get(f"accumulated_{k}_tokens") for k in ("input", "output", "total")]
    prefix = "accumulated_" if any(type(v) is int for v in accumulated) else ""
    given = token_count(record.get(f"{prefix}input_tokens"))
    output = token_count(record.get(f"{prefix}output_tokens"))
    if not (given or output):
        return []
    return [UsageReported(message_key=f"session:{session_id}", model=model,
                          input_tokens=given, output_tokens=output, **common)]


# -- messages ----------------------------------------------------------------------------------


def _message(record: Obj) -> list[EventPayload]:
    items = [item for item in record["content"] if isinstance(item, dict)]
    key = _message_key(record, items)
    common: Common = {"timestamp": _time_of(record)}
    meta = as_obj(record.get("metadata")).get("userVisible") is False
    payloads: list[EventPayload] = []
    for index, item in enumerate(items):
        handler = ITEM_HANDLERS.get(as_str(item.get("type")) or "")
        if handler is not None:
            payloads.extend(handler(item, record["role"], key, index, meta, common))
    return payloads


def _message_key(record: Obj, items: list[Obj]) -> str:
    """What the message says, as a key: time, role, and a digest of its texts and tool ids."""
    said = [str(item.get("text") or item.get("thinking") or item.get("id") or item.get("type"))
            for item in items]
    text = json.dumps([record.get("role"), said], ensure_ascii=False)
    return f"{record.get('created')}:{record.get('role')}:" + hashlib.sha256(
        text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _text(item: Obj, role: str, key: str, index: int, meta: bool,
          common: Common) -> list[EventPayload]:
    text, truncated = clip(as_str(item.get("text")) or as_str(item.get("thinking")) or "")
    own = {**common, "line_uuid": f"{key}:{index}"}
    if role == "user":
        return [UserPrompted(text=text, is_meta=meta, truncated=truncated, **own)]
    if not text.strip():
        return []
    block = "text" if item.get("type") == "text" else "thinking"
    return [AssistantMessage(message_key=key, block_type=block, text=text, truncated=truncated,
                             **own)]


def _request(item: Obj, role: str, key: str, index: int, meta: bool,
             common: Common) -> list[EventPayload]:
    call_id = as_str(item.get("id"))
    if not call_id:
        return []
    value = as_obj(as_obj(item.get("toolCall")).get("value"))
    name, args = as_str(value.get("name")) or "", as_obj(value.get("arguments"))
    own = {**common, "line_uuid": f"{key}:{index}"}
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=call_id, name=name, input=args,
                                               message_key=key, **own)]
    path = as_str(args.get("path"))
    if name in EDITOR_TOOLS and path:
        access: Literal["read", "write"] = (
            "read" if args.get("command") in READ_COMMANDS else "write")
        payloads.append(FileTouched(path=path, tool=name, access=access, tool_use_id=call_id,
                                    **own))
    return payloads


def _response(item: Obj, role: str, key: str, index: int, meta: bool,
              common: Common) -> list[EventPayload]:
    call_id = as_str(item.get("id"))
    if not call_id:
        return []
    result = as_obj(item.get("toolResult"))
    value: Any = result.get("value")
    failed = result.get("status") == "error" or as_obj(value).get("isError") is True
    parts = value if isinstance(value, list) else as_obj(value).get("content")
    shown = "\n".join(as_str(part.get("text")) or "" for part in parts or []
                      if isinstance(part, dict)) if isinstance(parts, list) else ""
    content, truncated = clip(shown or as_str(result.get("error")) or "")
    return [ToolResulted(tool_use_id=call_id, is_error=failed, content=content,
                         truncated=truncated, **{**common, "line_uuid": f"{key}:{index}"})]


ITEM_HANDLERS: dict[str, Callable[[Obj, str, str, int, bool, Common], list[EventPayload]]] = {
    "text": _text, "thinking": _text, "toolRequest": _request, "toolResponse": _response,
}
