"""Claude Code transcript lines -> normalized session events: the pure half of one agent.

This module owns the meaning of every Claude Code JSONL line type (main files and sub-agent
files of every era) and turns one raw line into the typed events of ``sessions.events.v1``.
It reports per-line facts and never deduplicates across lines: each assistant line with usage
yields one ``usage.reported`` keyed by ``message_key`` (``message.id:requestId``) and the
projections keep the largest report per key (rule 1); ``progress`` lines, which mirror
sub-agent traffic already present in the sub-agent files, yield nothing (rule 2). No I/O and no
faust here: the agent around :func:`decide` consumes, dead-letters :class:`InvalidEvent`, sends.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Literal

from pydantic import ValidationError

from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    EventPayload,
    FileTouched,
    SessionCompacted,
    SessionContext,
    SessionEvent,
    SessionFileRemoved,
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

__all__ = ["MAX_TEXT_CHARS", "decide"]

Line = dict[str, Any]
Common = dict[str, Any]

# Texts are clipped (and flagged ``truncated``) so one event stays far below Kafka's default
# 1 MiB message limit even when a tool result holds a whole file.
MAX_TEXT_CHARS = 100_000
MAX_RAW_CHARS = 2_000
SYNTHETIC_MODEL = "<synthetic>"
FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "Read": "read", "Edit": "write", "Write": "write", "MultiEdit": "write",
    "NotebookEdit": "write",
}
CONTEXT_FIELDS = ("cwd", "gitBranch", "slug", "version")
TITLES: dict[str, tuple[str, Literal["summary", "ai", "custom"]]] = {
    "summary": ("summary", "summary"), "ai-title": ("aiTitle", "ai"),
    "custom-title": ("customTitle", "custom"),
}
# JSON may escape lone UTF-16 surrogates (JS slicing cuts emoji in half); they cannot be encoded.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# progress mirrors sub-agent lines and streams tool output; the rest is harness metadata.
SILENT_TYPES = frozenset({
    "progress", "file-history-snapshot", "queue-operation", "attachment", "last-prompt",
    "agent-name", "mode", "permission-mode", "pr-link", "agent-setting",
})


def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event stands for.

    Pure and deterministic: the same input gives the same events with the same ids
    (``derive_event_id(event.event_id, kind, n)``, ``n`` counting that kind within the line), so
    reprocessing is harmless. Unknown line types become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object, or does not fit the event schemas; the
            message names the file and line number. The caller dead-letters the event.
    """
    if event.type == "file.removed":
        removed = SessionFileRemoved(path=event.payload.path, agent_id=event.payload.agent_id)
        return _envelopes(event, [removed], None)
    if event.type != "file.line_appended":
        raise InvalidEvent(f"{_where(event)}: unexpected event type {event.type!r}")
    line = _load(event)
    try:
        return _envelopes(event, _derive(line, event), _timestamp(line))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidEvent(
            f"{_where(event)}: does not fit the event schema "
            f"({'.'.join(map(str, first['loc']))}: {first['msg']})"
        ) from exc


def _where(event: FileChanged) -> str:
    return f"{event.payload.path} line {event.payload.line_no}"


def _load(event: FileChanged) -> Line:
    try:
        value = json.loads(event.payload.line)
    except json.JSONDecodeError as exc:
        detail = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise InvalidEvent(f"{_where(event)}: not JSON ({detail} at char {exc.pos})") from exc
    except RecursionError as exc:
        raise InvalidEvent(f"{_where(event)}: not JSON (nested too deeply)") from exc
    if not isinstance(value, dict):
        raise InvalidEvent(f"{_where(event)}: not a JSON object (got {type(value).__name__})")
    return _scrub(value) if SURROGATE_ESCAPE.search(event.payload.line) else value


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, so events encode as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def _envelopes(
    event: FileChanged, payloads: list[EventPayload], occurred_at: datetime | None
) -> list[SessionEvent]:
    seen: Counter[str] = Counter()
    envelopes = []
    for payload in payloads:
        index = seen[payload.kind]
        seen[payload.kind] += 1
        envelopes.append(SessionEvent(
            event_id=derive_event_id(event.event_id, payload.kind, index), source=event.source,
            type=payload.kind, occurred_at=occurred_at or event.occurred_at,
            session_id=event.session_id, payload=payload,
        ))
    return envelopes


def _derive(line: Line, event: FileChanged) -> list[EventPayload]:
    kind = line.get("type")
    name = kind if isinstance(kind, str) else None  # a list or dict "type" is just unknown
    common = _common(line, event)
    if name in SILENT_TYPES:
        return []
    if name in TITLES:
        return _title(line, name, common)
    handler = HANDLERS.get(name) if name else None
    if handler is None:
        line_type = None if kind is None else str(kind)
        return [UnknownLine(line_type=line_type, raw=event.payload.line[:MAX_RAW_CHARS], **common)]
    return [*_context(line, event, common), *handler(line, event, common)]


def _common(line: Line, event: FileChanged) -> Common:
    """Provenance fields every payload of this line carries."""
    return {
        "line_uuid": _str(line.get("uuid")),
        "timestamp": _timestamp(line),
        "agent_id": event.payload.agent_id or _str(line.get("agentId")),
        "is_sidechain": line.get("isSidechain") is True,
    }


def _context(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    if not any(isinstance(line.get(field), str) for field in CONTEXT_FIELDS):
        return []
    return [SessionContext(
        cwd=_str(line.get("cwd")), git_branch=_str(line.get("gitBranch")),
        slug=_str(line.get("slug")), version=_str(line.get("version")),
        project=_project(event.payload.path), **common,
    )]


def _project(path: str) -> str | None:
    """The folder under ``projects/``: the parent of a main file or sibling agent file, or the
    parent of ``<session>/`` for files under ``<session>/subagents/`` (at any depth)."""
    file = PurePath(path)
    subagents = next((folder for folder in file.parents if folder.name == "subagents"), None)
    folder = subagents.parent.parent if subagents else file.parent
    return folder.name or None


def _user(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    content = _obj(line.get("message")).get("content")
    if isinstance(content, str):
        return [_prompt(line, content, common)]
    if not isinstance(content, list):
        return []
    blocks = [block for block in content if isinstance(block, dict)]
    results = [block for block in blocks if block.get("type") == "tool_result"]
    if not results:
        texts = [b["text"] for b in blocks if b.get("type") == "text" and _str(b.get("text"))]
        return [_prompt(line, "\n".join(texts), common)]
    return [*(_tool_result(block, common) for block in results),
            *_subagent_link(line, results, common)]


def _prompt(line: Line, text: str, common: Common) -> UserPrompted:
    clipped, truncated = _clip(text)
    return UserPrompted(
        text=clipped, truncated=truncated, is_meta=line.get("isMeta") is True,
        is_compact_summary=line.get("isCompactSummary") is True, **common,
    )


def _tool_result(block: Line, common: Common) -> ToolResulted:
    content, truncated = _clip(_flatten(block.get("content")))
    return ToolResulted(
        tool_use_id=_str(block.get("tool_use_id")) or "", is_error=block.get("is_error") is True,
        content=content, truncated=truncated, **common,
    )


def _flatten(content: object) -> str:
    """Tool result content as text: text blocks verbatim, other blocks as ``[type]``."""
    if isinstance(content, str):
        return content
    blocks = [_obj(block) for block in content] if isinstance(content, list) else []
    return "\n".join(b["text"] if isinstance(b.get("text"), str) else f"[{b.get('type', 'block')}]"
                     for b in blocks)


def _subagent_link(line: Line, results: list[Line], common: Common) -> list[EventPayload]:
    child = _str(_obj(line.get("toolUseResult")).get("agentId"))
    if not child:
        return []
    return [SubagentLinked(child_agent_id=child, tool_use_id=_str(results[0].get("tool_use_id")),
                           **common)]


def _assistant(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    message = _obj(line.get("message"))
    key = _message_key(line, message, fallback=event.event_id)
    model = _str(message.get("model"))
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    events: list[EventPayload] = []
    for block in blocks:
        events.append(_fragment(block, key, model, common))
        if block.get("type") == "tool_use":
            events.extend(_tool_use(block, key, common))
    return [*events, *_usage(message, key, model, common)]


def _message_key(line: Line, message: Line, fallback: str) -> str:
    """``message.id:requestId``; ``message.id`` without a request id; else the line itself."""
    message_id, request_id = _str(message.get("id")), _str(line.get("requestId"))
    if message_id:
        return f"{message_id}:{request_id}" if request_id else message_id
    return _str(line.get("uuid")) or fallback


def _fragment(block: Line, key: str, model: str | None, common: Common) -> AssistantMessage:
    block_type = _str(block.get("type")) or "unknown"
    text, truncated = _clip(_str(block.get("thinking" if block_type == "thinking" else "text"))
                            or "")
    return AssistantMessage(message_key=key, model=model, block_type=block_type, text=text,
                            truncated=truncated, **common)


def _tool_use(block: Line, key: str, common: Common) -> list[EventPayload]:
    tool_use_id, name = _str(block.get("id")) or "", _str(block.get("name")) or ""
    tool_input = _obj(block.get("input"))
    events: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name,
                                             input=tool_input, message_key=key, **common)]
    access = FILE_ACCESS.get(name)
    path = _str(tool_input.get("file_path")) or _str(tool_input.get("notebook_path"))
    if access and path:
        events.append(FileTouched(path=path, tool=name, access=access, tool_use_id=tool_use_id,
                                  **common))
    return events


def _usage(message: Line, key: str, model: str | None, common: Common) -> list[EventPayload]:
    usage = message.get("usage")
    # <synthetic> lines are local API-error notices: no request was billed.
    if not isinstance(usage, dict) or model == SYNTHETIC_MODEL:
        return []
    split = _obj(usage.get("cache_creation"))
    if "ephemeral_5m_input_tokens" in split or "ephemeral_1h_input_tokens" in split:
        five_m = _int(split.get("ephemeral_5m_input_tokens"))
        one_h = _int(split.get("ephemeral_1h_input_tokens"))
    else:  # before the split existed every cache write was a 5-minute one
        five_m, one_h = _int(usage.get("cache_creation_input_tokens")), 0
    return [UsageReported(
        message_key=key, model=model or "unknown",
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cache_creation_5m_tokens=five_m, cache_creation_1h_tokens=one_h,
        cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
        speed=_str(usage.get("speed")), **common,
    )]


def _system(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    subtype = _str(line.get("subtype"))
    if subtype == "compact_boundary":
        meta = _obj(line.get("compactMetadata"))
        pre_tokens = meta.get("preTokens")
        return [SessionCompacted(trigger=_str(meta.get("trigger")),
                                 pre_tokens=pre_tokens if type(pre_tokens) is int else None,
                                 **common)]
    content, _ = _clip(_str(line.get("content")) or "")
    return [SystemEvent(subtype=subtype, content=content, **common)]


def _title(line: Line, kind: str, common: Common) -> list[EventPayload]:
    field, title_source = TITLES[kind]
    title = _str(line.get(field))
    return [SessionTitled(title=title, title_source=title_source, **common)] if title else []


HANDLERS: dict[str, Callable[[Line, FileChanged, Common], list[EventPayload]]] = {
    "user": _user, "assistant": _assistant, "system": _system,
}


def _timestamp(line: Line) -> datetime | None:
    raw = line.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    # Claude writes UTC ("...Z"); a naive value must not poison comparisons downstream.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clip(text: str) -> tuple[str, bool]:
    return (text[:MAX_TEXT_CHARS], True) if len(text) > MAX_TEXT_CHARS else (text, False)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int:
    """A token count: non-negative ints pass, anything else (null, bool, junk) counts 0."""
    return value if type(value) is int and value >= 0 else 0


def _obj(value: object) -> Line:
    return value if isinstance(value, dict) else {}
