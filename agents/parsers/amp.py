"""Amp thread records -> normalized session events: the pure half of one agent.

The producer (:mod:`streams.producers.amp`) splits each rewritten ``T-<id>.json`` thread into
records ``{"kind", "index", "value"}``: ``thread`` (the document without its messages: title,
``created``, ``env.initial.trees``), ``message`` (one ``messages[]`` element) and ``ledger``
(one ``usageLedger.events[]`` element). Messages carry Anthropic-style content blocks:
``text``, ``thinking``, ``tool_use`` (``id``, ``name``, ``input``) and ``tool_result`` (Amp's
own ``toolUseID`` + ``run {status, result, error}``, or the canonical ``tool_use_id``).

Tokens: each assistant message's ``usage`` has ``model``, ``inputTokens``,
``outputTokens`` (reasoning included), ``cacheCreationInputTokens``, ``cacheReadInputTokens``
and ``totalInputTokens`` = input + cache creation + cache read, so Amp's buckets are already
disjoint and map one to one (``cacheCreationInputTokens`` -> ``cache_creation_5m_tokens``).
For ``gpt-*`` models Amp reports ``inputTokens`` 0 and files the uncached prompt as cache
creation; OpenAI bills no cache writes, so that part is reported as fresh input.
``totalInputTokens`` is never added (it would count the prompt twice).

Traps, all absorbed by natural keys (``message_key`` = ``<thread>:<messageId>``):

* the document is rewritten whole while a reply streams: a changed message is republished
  with the same keys, fragments overwrite by ``line_uuid`` and the larger usage wins;
* ``usageLedger.events[]`` (older threads) reports the same inference again, naming it by
  ``toMessageId``: its usage is filed under that message's key, so the ledger and the
  message never add up (the projection keeps the larger; the message's, which also carries
  the cache split, whenever both exist). A ledger event without ``toMessageId`` has a key
  of its own;
* a tool result arrives in a later user message, first without a terminal ``run.status``:
  only ``done`` / ``error`` / ``cancelled`` / ``rejected-by-user`` results are reported,
  keyed by the call's id.
"""

from __future__ import annotations

import json
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
    SessionContext,
    SessionEvent,
    SessionTitled,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UsageReported,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.producers.amp import AmpProducer

__all__ = ["decide"]

FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "Read": "read", "read_file": "read", "look_at": "read", "edit_file": "write",
    "create_file": "write", "undo_edit": "write", "format_file": "write",
}
DONE = frozenset({"done", "error", "cancelled", "rejected-by-user"})
FAILED = frozenset({"error", "cancelled", "rejected-by-user"})


@parses(AmpProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events of one ``amp`` record (pure, deterministic; ids derive from the
    input event). Unknown records become ``line.unknown``.

    Raises:
        InvalidEvent: the record is not a JSON object or its payloads do not fit the schemas.
    """
    return decide_lines(event, derive)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one ``{"kind", "index", "value"}`` record."""
    kind, value = record.get("kind"), record.get("value")
    if isinstance(value, dict):
        if kind == "thread":
            return _thread(value, event)
        if kind == "message" and value.get("role") in ("user", "assistant"):
            return _message(value, record.get("index"), event)
        if kind == "ledger":
            return _ledger(value, event)
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=f"amp/{kind}", raw=raw, agent_id=event.payload.agent_id,
                        line_uuid=derive_event_id("amp-record", raw))]


def _thread(thread: Obj, event: FileChanged) -> list[EventPayload]:
    """Context (cwd and project from the first workspace tree) and the title."""
    common: Common = {"timestamp": parse_time(thread.get("created")),
                      "agent_id": event.payload.agent_id}
    trees = as_obj(as_obj(thread.get("env")).get("initial")).get("trees")
    first = as_obj(trees[0]) if isinstance(trees, list) and trees else {}
    uri = as_str(first.get("uri")) or ""
    cwd = uri.removeprefix("file://") if uri.startswith("file://") else None
    project = as_str(first.get("displayName"))
    payloads: list[EventPayload] = []
    if cwd or project:
        payloads.append(SessionContext(cwd=cwd, project=project, **common))
    title = as_str(thread.get("title"))
    if title and title.strip():
        payloads.append(SessionTitled(title=clip(title)[0], title_source="ai", **common))
    return payloads


def _message(message: Obj, index: object, event: FileChanged) -> list[EventPayload]:
    mid = message.get("messageId")
    mid = mid if isinstance(mid, (int, str)) else f"@{index}"
    key = f"{event.session_id}:{mid}"
    usage = as_obj(message.get("usage"))
    common: Common = {"line_uuid": key, "timestamp": parse_time(usage.get("timestamp")),
                      "agent_id": event.payload.agent_id}
    blocks = message.get("content")
    if isinstance(blocks, str):
        blocks = [{"type": "text", "text": blocks}]
    blocks = [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
    if message["role"] == "user":
        return _user(blocks, common)
    return _assistant(blocks, usage, key, common)


def _user(blocks: list[Obj], common: Common) -> list[EventPayload]:
    """The prompt (its text blocks), and the tool results it carries back."""
    payloads: list[EventPayload] = []
    texts = [as_str(b.get("text")) or "" for b in blocks if b.get("type") == "text"]
    if texts:
        text, truncated = clip("\n".join(texts))
        payloads.append(UserPrompted(text=text, truncated=truncated,
                                     is_meta=not text.strip(), **common))
    results = (_result(b, common) for b in blocks if b.get("type") == "tool_result")
    payloads.extend(result for result in results if result is not None)
    return payloads


def _result(block: Obj, common: Common) -> ToolResulted | None:
    tool_use_id = as_str(block.get("toolUseID")) or as_str(block.get("tool_use_id"))
    if not tool_use_id:
        return None
    own = {**common, "line_uuid": f"{common['line_uuid']}:{tool_use_id}"}
    if "run" not in block:  # the canonical Anthropic shape
        return ToolResulted(tool_use_id=tool_use_id, is_error=block.get("is_error") is True,
                            content=clip(_text(block.get("content")))[0], **own)
    run = as_obj(block.get("run"))
    status = as_str(run.get("status"))
    if status not in DONE:
        return None  # still queued or running: the rewrite that finishes it reports it
    shown = run.get("result") if status == "done" else as_obj(run.get("error")).get(
        "message", status)
    content, truncated = clip(_text(shown))
    return ToolResulted(tool_use_id=tool_use_id, is_error=status in FAILED, content=content,
                        truncated=truncated, **own)


def _assistant(blocks: list[Obj], usage: Obj, key: str, common: Common) -> list[EventPayload]:
    model = as_str(usage.get("model"))
    payloads: list[EventPayload] = []
    texts = [as_str(b.get("text")) or "" for b in blocks if b.get("type") == "text"]
    if texts:
        text, truncated = clip("\n".join(texts))
        payloads.append(AssistantMessage(message_key=key, model=model, text=text,
                                         truncated=truncated, **common))
    thoughts = [as_str(b.get("thinking")) or "" for b in blocks if b.get("type") == "thinking"]
    if any(thoughts):
        text, truncated = clip("\n".join(thoughts))
        payloads.append(AssistantMessage(
            message_key=key, model=model, block_type="thinking", text=text,
            truncated=truncated, **{**common, "line_uuid": f"{key}:thinking"}))
    for block in blocks:
        if block.get("type") == "tool_use" and as_str(block.get("id")):
            payloads.extend(_call(block, key, common))
    payloads.extend(_usage(usage, key, model, common))
    if model:
        payloads.append(SessionContext(model=model, **common))
    return payloads


def _call(block: Obj, key: str, common: Common) -> list[EventPayload]:
    tool_use_id, name = block["id"], as_str(block.get("name")) or ""
    args = as_obj(block.get("input"))
    own = {**common, "line_uuid": f"{key}:{tool_use_id}"}
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name, input=args,
                                               message_key=key, **own)]
    access, path = FILE_ACCESS.get(name), as_str(args.get("path"))
    if access and path:
        payloads.append(FileTouched(path=path, tool=name, access=access,
                                    tool_use_id=tool_use_id, **own))
    return payloads


def _usage(usage: Obj, key: str, model: str | None, common: Common) -> list[EventPayload]:
    fresh = token_count(usage.get("inputTokens"))
    writes = token_count(usage.get("cacheCreationInputTokens"))
    if model and model.startswith("gpt-"):  # OpenAI: no cache writes; that is fresh input
        fresh, writes = fresh + writes, 0
    report = UsageReported(message_key=key, model=model, input_tokens=fresh,
                           output_tokens=token_count(usage.get("outputTokens")),
                           cache_creation_5m_tokens=writes,
                           cache_read_tokens=token_count(usage.get("cacheReadInputTokens")),
                           **common)
    return [report] if report.total else []


def _ledger(entry: Obj, event: FileChanged) -> list[EventPayload]:
    """A ledger event's usage, filed under the message it paid for (see the module doc)."""
    target = entry.get("toMessageId")
    own = entry.get("id") if isinstance(entry.get("id"), (int, str)) else None
    if isinstance(target, (int, str)):
        key = f"{event.session_id}:{target}"
    else:
        key = f"{event.session_id}:ledger:{own}"
    tokens = as_obj(entry.get("tokens"))
    model = as_str(entry.get("model"))
    common: Common = {"line_uuid": f"{event.session_id}:ledger:{own}",
                      "timestamp": parse_time(entry.get("timestamp")),
                      "agent_id": event.payload.agent_id}
    return _usage({"inputTokens": tokens.get("input"), "outputTokens": tokens.get("output"),
                   "cacheCreationInputTokens": tokens.get("cacheCreationInputTokens"),
                   "cacheReadInputTokens": tokens.get("cacheReadInputTokens")},
                  key, model, common)


def _text(value: object) -> str:
    """A tool result as text: strings as they are, Amp's ``{output|content|diff}`` objects
    by that field, text blocks joined, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for field in ("output", "content", "diff"):
            if field in value:
                return _text(value[field])
    if isinstance(value, list) and all(isinstance(v, dict) and v.get("type") == "text"
                                       for v in value) and value:
        return "\n".join(as_str(v.get("text")) or "" for v in value)
    return json.dumps(value, ensure_ascii=False)
