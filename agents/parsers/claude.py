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

from collections.abc import Callable
from functools import lru_cache
from pathlib import PurePath
from typing import Any, Literal

from agents.parsers.lines import (
    MAX_RAW_CHARS,
    MAX_TEXT_CHARS,
    Common,
    as_obj,
    as_str,
    clip,
    decide_lines,
    timestamp_of,
    token_count,
)
from agents.parsers.registry import parses
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
from streams.producers.claude import ClaudeCodeProducer

__all__ = ["MAX_TEXT_CHARS", "decide"]

Line = dict[str, Any]

SYNTHETIC_MODEL = "<synthetic>"
FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "Read": "read", "Edit": "write", "Write": "write", "MultiEdit": "write",
    "NotebookEdit": "write",
}
CONTEXT_FIELDS = ("cwd", "gitBranch", "slug", "version", "sessionKind")
TITLES: dict[str, tuple[str, Literal["summary", "ai", "custom"]]] = {
    "summary": ("summary", "summary"), "ai-title": ("aiTitle", "ai"),
    "custom-title": ("customTitle", "custom"),
}
# progress mirrors sub-agent lines and streams tool output; the rest is harness metadata.
SILENT_TYPES = frozenset({
    "progress", "file-history-snapshot", "queue-operation", "attachment", "last-prompt",
    "agent-name", "mode", "permission-mode", "pr-link", "agent-setting",
})


@parses(ClaudeCodeProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event stands for.

    Pure and deterministic: the same input gives the same events with the same ids
    (``derive_event_id(event.event_id, kind, n)``, ``n`` counting that kind within the line), so
    reprocessing is harmless. Unknown line types become ``line.unknown``, never an error.

    Raises:
        InvalidEvent: the line is not a JSON object, or does not fit the event schemas; the
            message names the file and line number. The caller dead-letters the event.
    """
    return decide_lines(event, _derive)


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
        "line_uuid": as_str(line.get("uuid")),
        "timestamp": timestamp_of(line),
        "agent_id": event.payload.agent_id or as_str(line.get("agentId")),
        "is_sidechain": line.get("isSidechain") is True,
    }


def _context(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    if not any(isinstance(line.get(field), str) for field in CONTEXT_FIELDS):
        return []
    return [SessionContext(
        cwd=as_str(line.get("cwd")), git_branch=as_str(line.get("gitBranch")),
        slug=as_str(line.get("slug")), version=as_str(line.get("version")),
        session_kind=as_str(line.get("sessionKind")), project=_project(event.payload.path),
        **common,
    )]


@lru_cache(maxsize=4096)  # asked per context line; one answer per file
def _project(path: str) -> str | None:
    """The folder under ``projects/``: the parent of a main file or sibling agent file, or the
    parent of ``<session>/`` for files under ``<session>/subagents/`` (at any depth)."""
    file = PurePath(path)
    subagents = next((folder for folder in file.parents if folder.name == "subagents"), None)
    folder = subagents.parent.parent if subagents else file.parent
    return folder.name or None


def _user(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    content = as_obj(line.get("message")).get("content")
    if isinstance(content, str):
        return [_prompt(line, content, common)]
    if not isinstance(content, list):
        return []
    blocks = [block for block in content if isinstance(block, dict)]
    results = [block for block in blocks if block.get("type") == "tool_result"]
    if not results:
        texts = [b["text"] for b in blocks if b.get("type") == "text" and as_str(b.get("text"))]
        return [_prompt(line, "\n".join(texts), common)]
    return [*(_tool_result(block, common) for block in results),
            *_subagent_link(line, results, common)]


def _prompt(line: Line, text: str, common: Common) -> UserPrompted:
    clipped, truncated = clip(text)
    return UserPrompted(
        text=clipped, truncated=truncated, is_meta=line.get("isMeta") is True,
        is_compact_summary=line.get("isCompactSummary") is True, **common,
    )


def _tool_result(block: Line, common: Common) -> ToolResulted:
    content, truncated = clip(_flatten(block.get("content")))
    return ToolResulted(
        tool_use_id=as_str(block.get("tool_use_id")) or "", is_error=block.get("is_error") is True,
        content=content, truncated=truncated, **common,
    )


def _flatten(content: object) -> str:
    """Tool result content as text: text blocks verbatim, other blocks as ``[type]``."""
    if isinstance(content, str):
        return content
    blocks = [as_obj(block) for block in content] if isinstance(content, list) else []
    return "\n".join(b["text"] if isinstance(b.get("text"), str) else f"[{b.get('type', 'block')}]"
                     for b in blocks)


def _subagent_link(line: Line, results: list[Line], common: Common) -> list[EventPayload]:
    child = as_str(as_obj(line.get("toolUseResult")).get("agentId"))
    if not child:
        return []
    return [SubagentLinked(child_agent_id=child, tool_use_id=as_str(results[0].get("tool_use_id")),
                           **common)]


def _assistant(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    message = as_obj(line.get("message"))
    key = _message_key(line, message, fallback=event.event_id)
    model = as_str(message.get("model"))
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
    message_id, request_id = as_str(message.get("id")), as_str(line.get("requestId"))
    if message_id:
        return f"{message_id}:{request_id}" if request_id else message_id
    return as_str(line.get("uuid")) or fallback


def _fragment(block: Line, key: str, model: str | None, common: Common) -> AssistantMessage:
    block_type = as_str(block.get("type")) or "unknown"
    text, truncated = clip(as_str(block.get("thinking" if block_type == "thinking" else "text"))
                            or "")
    return AssistantMessage(message_key=key, model=model, block_type=block_type, text=text,
                            truncated=truncated, **common)


def _tool_use(block: Line, key: str, common: Common) -> list[EventPayload]:
    tool_use_id, name = as_str(block.get("id")) or "", as_str(block.get("name")) or ""
    tool_input = as_obj(block.get("input"))
    events: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name,
                                             input=tool_input, message_key=key, **common)]
    access = FILE_ACCESS.get(name)
    path = as_str(tool_input.get("file_path")) or as_str(tool_input.get("notebook_path"))
    if access and path:
        events.append(FileTouched(path=path, tool=name, access=access, tool_use_id=tool_use_id,
                                  **common))
    return events


def _usage(message: Line, key: str, model: str | None, common: Common) -> list[EventPayload]:
    usage = message.get("usage")
    # <synthetic> lines are local API-error notices: no request was billed.
    if not isinstance(usage, dict) or model == SYNTHETIC_MODEL:
        return []
    split = as_obj(usage.get("cache_creation"))
    if "ephemeral_5m_input_tokens" in split or "ephemeral_1h_input_tokens" in split:
        five_m = token_count(split.get("ephemeral_5m_input_tokens"))
        one_h = token_count(split.get("ephemeral_1h_input_tokens"))
    else:  # before the split existed every cache write was a 5-minute one
        five_m, one_h = token_count(usage.get("cache_creation_input_tokens")), 0
    return [UsageReported(
        message_key=key, model=model or "unknown",
        input_tokens=token_count(usage.get("input_tokens")),
        output_tokens=token_count(usage.get("output_tokens")),
        cache_creation_5m_tokens=five_m, cache_creation_1h_tokens=one_h,
        cache_read_tokens=token_count(usage.get("cache_read_input_tokens")),
        speed=as_str(usage.get("speed")), **common,
    )]


def _system(line: Line, event: FileChanged, common: Common) -> list[EventPayload]:
    subtype = as_str(line.get("subtype"))
    if subtype == "compact_boundary":
        meta = as_obj(line.get("compactMetadata"))
        pre = meta.get("preTokens")
        return [SessionCompacted(trigger=as_str(meta.get("trigger")),
                                 pre_tokens=pre if type(pre) is int and pre >= 0 else None,
                                 **common)]
    content, _ = clip(as_str(line.get("content")) or "")
    return [SystemEvent(subtype=subtype, content=content, **common)]


def _title(line: Line, kind: str, common: Common) -> list[EventPayload]:
    field, title_source = TITLES[kind]
    title = as_str(line.get(field))
    return [SessionTitled(title=title, title_source=title_source, **common)] if title else []


HANDLERS: dict[str, Callable[[Line, FileChanged, Common], list[EventPayload]]] = {
    "user": _user, "assistant": _assistant, "system": _system,
}
