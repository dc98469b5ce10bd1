"""Antigravity files -> normalized session events: the pure half of one agent.

This module owns the meaning of what :mod:`streams.producers.antigravity` publishes
(session-formats.md section 3.3) and maps it onto the payload kinds the other parsers emit. It
sees one line or one whole-file snapshot at a time and keeps no state.

Artifacts (``file.snapshot`` of ``brain/<uuid>/X.md``, ``X.md.resolved``, ``X.md.resolved.N``):
one ``artifact.revised`` each, a revision of ``X.md`` (``revision`` ``current``, ``resolved``,
``resolved.N``) stamped with the file's mtime, identified by the sha-256 of the text published
(a file over the snapshot limit is hashed as cut, and flagged ``truncated``). The current
``task.md`` also reports ``session.state`` (facet ``task.md``): its first ``# `` heading as
title, its checklist as progress (``[x]`` done; ``[ ]``, ``[/]`` and any other mark not done)
and its first in-progress ``[/]`` item as the current task. The current
``implementation_plan.md`` titles the session by its heading (rank ``summary``: anything
better wins). ``X.md.metadata.json`` is one ``artifact.described`` of ``X.md``.

CLI transcript steps (``{step_index, source, type, status, created_at, content}``; ``type`` and
``status`` are read with or without their ``CORTEX_STEP_TYPE_`` / ``_STATUS_`` prefix): every key
is ``step:<step_index>``, so a step written again lands on the same rows. ``USER_INPUT`` is the
prompt (the text inside ``<USER_REQUEST>`` when wrapped); ``PLANNER_RESPONSE`` and
``NOTIFY_USER`` are the reply (``thinking`` as a thinking fragment; ``tool_calls`` the planner
requested are kept as a ``tool_use`` fragment, not as calls, since the step that runs each
tool is the call and counting both would count it twice); tool steps (``RUN_COMMAND``,
``VIEW_FILE``, ``CODE_ACTION``, any ``*TOOL*``, ...) are a call named by the lower-cased type,
with a result once the step is ``DONE`` with content or failed; anything else
(``CONVERSATION_HISTORY``, ``CHECKPOINT``, ...) is a ``system.event``; a line without a type is
``line.unknown``. Envelope times fall back to the file's mtime (steps have no ``timestamp``);
each payload carries its step's ``created_at``.

CLI prompt history (``history.jsonl``: ``{display, timestamp, workspace, type?,
conversationId?}``): a prompt and the workspace as context. A line naming its
``conversationId`` is filed under that conversation, where it gives the session its working
directory; its prompt is ``is_meta`` there because the transcript's ``USER_INPUT`` already
counts it. A line without one stays in the ``antigravity-cli-history`` session as a plain
prompt. ``type`` is not interpreted.

No token counts exist on disk for Antigravity, so no ``usage.reported`` is ever emitted.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import PurePath

from agents.parsers.lines import (
    MAX_RAW_CHARS,
    Obj,
    as_obj,
    as_str,
    clip,
    decide_lines,
    load_line,
    parse_time,
)
from agents.parsers.markdown_checklist import read_checklist
from agents.parsers.registry import parses
from schemas.envelope import derive_event_id
from schemas.events import (
    ArtifactDescribed,
    ArtifactRevised,
    AssistantMessage,
    EventPayload,
    SessionContext,
    SessionEvent,
    SessionStateReported,
    SessionTitled,
    SystemEvent,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.producers.antigravity import AntigravityProducer

__all__ = ["decide"]


MAX_INPUT_CHARS = 10_000
HISTORY = "history.jsonl"
METADATA_SUFFIX = ".metadata.json"
REVISION = re.compile(r"^(?P<name>.+\.md)(?:\.(?P<revision>resolved(?:\.\d+)?))?$")
USER_REQUEST = re.compile(r"<USER_REQUEST>(?P<text>.*?)</USER_REQUEST>", re.DOTALL)
PREFIXES = ("CORTEX_STEP_TYPE_", "CORTEX_STEP_STATUS_", "CORTEX_STEP_SOURCE_")
REPLY_TYPES = frozenset({"PLANNER_RESPONSE", "NOTIFY_USER"})
TOOL_TYPES = frozenset({
    "CODE_ACTION", "RUN_COMMAND", "COMMAND_STATUS", "SEND_COMMAND_INPUT", "VIEW_FILE",
    "VIEW_FILE_OUTLINE", "VIEW_CODE_ITEM", "VIEW_CONTENT_CHUNK", "WRITE_TO_FILE", "PROPOSE_CODE",
    "LIST_DIRECTORY", "GREP_SEARCH", "FIND", "READ_URL_CONTENT", "SEARCH_WEB",
})
TOOL_MARKERS = ("TOOL", "BROWSER_")
FAILED = frozenset({"ERROR", "FAILED"})
STEP_FIELDS = frozenset({"step_index", "source", "type", "status", "created_at", "content"})


@parses(AntigravityProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events one ``sessions.file-changes.v1`` event stands for.

    Pure and deterministic (ids from ``derive_event_id(event.event_id, kind, n)``). Unknown
    step types become ``system.event``, typeless lines ``line.unknown``, never an error.

    Raises:
        InvalidEvent: a line or a ``.metadata.json`` that is not a JSON object, or payloads
            that do not fit the event schemas; the message names the file and line.
    """
    return decide_lines(event, _derive, snapshot=_derive_snapshot, session_of=_session_of,
                        time_of=_time_of)


def _time_of(line: Obj) -> datetime | None:
    """A transcript step's ``created_at``, a history line's ``timestamp`` (epoch ms)."""
    return parse_time(line.get("created_at")) or parse_time(line.get("timestamp"))


def _session_of(line: Obj) -> str | None:
    """A history line's ``conversationId``: its conversation's session."""
    return as_str(line.get("conversationId")) or None


# -- snapshots: artifacts and their metadata ---------------------------------------------------


def _derive_snapshot(event: FileChanged) -> list[EventPayload]:
    path = event.payload.path
    name = PurePath(path).name
    if name.endswith(".md" + METADATA_SUFFIX):
        return [_described(event, path.removesuffix(METADATA_SUFFIX))]
    match = REVISION.match(name)
    if match is None:
        return [UnknownLine(line_type="snapshot", raw=event.payload.line[:MAX_RAW_CHARS])]
    artifact = path[: len(path) - len(name) + len(match["name"])]
    revision = match["revision"] or "current"
    payloads: list[EventPayload] = [_revised(event, artifact, match["name"], revision)]
    if revision == "current":
        payloads.extend(_artifact_state(event, match["name"]))
    return payloads


def _revised(event: FileChanged, path: str, name: str, revision: str) -> ArtifactRevised:
    text = event.payload.line
    data = text.encode("utf-8", "surrogatepass")
    content, cut = clip(text)
    return ArtifactRevised(
        path=path, name=name, revision=revision, content=content,
        content_sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        truncated=cut or event.payload.truncated, updated_at=event.occurred_at,
        timestamp=event.occurred_at,
    )


def _artifact_state(event: FileChanged, name: str) -> list[EventPayload]:
    """What the current task list and plan say about the session as a whole."""
    if name not in ("task.md", "implementation_plan.md"):
        return []
    checklist = read_checklist(event.payload.line)
    if name == "implementation_plan.md":
        if checklist.title is None:
            return []
        return [SessionTitled(title=checklist.title, timestamp=event.occurred_at)]
    counted = checklist.total > 0
    return [SessionStateReported(
        facet=name, updated_at=event.occurred_at, timestamp=event.occurred_at,
        title=checklist.title, current_task=checklist.current,
        progress_done=checklist.done if counted else None,
        progress_total=checklist.total if counted else None,
    )]


def _described(event: FileChanged, path: str) -> ArtifactDescribed:
    meta = load_line(event)
    version = meta.get("version")
    summary = as_str(meta.get("summary"))
    return ArtifactDescribed(
        path=path, artifact_type=as_str(meta.get("artifactType")),
        summary=clip(summary)[0] if summary is not None else None,
        version=str(version) if type(version) in (str, int) else None,
        updated_at=parse_time(meta.get("updatedAt")) or event.occurred_at,
        timestamp=event.occurred_at,
    )


# -- lines: transcript steps and prompt history ------------------------------------------------


def _derive(line: Obj, event: FileChanged) -> list[EventPayload]:
    if PurePath(event.payload.path).name == HISTORY:
        return _history(line, event)
    return _step(line, event)


def _history(line: Obj, event: FileChanged) -> list[EventPayload]:
    common: Obj = {"line_uuid": "history:" + derive_event_id("antigravity", event.payload.line),
                   "timestamp": parse_time(line.get("timestamp"))}
    payloads: list[EventPayload] = []
    display = as_str(line.get("display"))
    if display:
        text, cut = clip(display)
        payloads.append(UserPrompted(text=text, truncated=cut,
                                     is_meta=_session_of(line) is not None, **common))
    workspace = as_str(line.get("workspace"))
    if workspace:
        payloads.append(SessionContext(cwd=workspace, **common))
    return payloads or [UnknownLine(line_type="history", raw=event.payload.line[:MAX_RAW_CHARS],
                                    **common)]


def _step(line: Obj, event: FileChanged) -> list[EventPayload]:
    index = line.get("step_index")
    key = (f"step:{index}" if type(index) is int
           else f"line:{derive_event_id('antigravity', event.payload.line)}")
    common: Obj = {"line_uuid": key, "timestamp": parse_time(line.get("created_at")),
                   "agent_id": event.payload.agent_id}
    kind = _name(line.get("type"))
    if kind is None:
        return [UnknownLine(line_type=None, raw=event.payload.line[:MAX_RAW_CHARS], **common)]
    if kind == "USER_INPUT":
        text, cut = clip(_user_request(_text(line.get("content"))))
        return [UserPrompted(text=text, truncated=cut, **common)]
    if kind in REPLY_TYPES:
        return _reply(line, key, common)
    if kind in TOOL_TYPES or any(marker in kind for marker in TOOL_MARKERS):
        return _tool(line, kind, key, common)
    return [SystemEvent(subtype=kind, content=clip(_text(line.get("content")))[0], **common)]


def _reply(line: Obj, key: str, common: Obj) -> list[EventPayload]:
    """The reply's text, thinking and requested tool calls as fragments of one message."""
    fragments = [("text", key, _text(line.get("content"))),
                 ("thinking", f"{key}:thinking", _text(line.get("thinking")))]
    calls = line.get("tool_calls")
    if isinstance(calls, list) and calls:
        fragments.append(("tool_use", f"{key}:tool_calls", json.dumps(calls)))
    payloads: list[EventPayload] = []
    for block_type, line_uuid, raw in fragments:
        if raw:
            text, cut = clip(raw)
            payloads.append(AssistantMessage(
                message_key=key, block_type=block_type, text=text, truncated=cut,
                **{**common, "line_uuid": line_uuid}))
    return payloads


def _tool(line: Obj, kind: str, key: str, common: Obj) -> list[EventPayload]:
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=key, name=kind.lower(),
                                               input=_tool_input(line), **common)]
    status, output = _name(line.get("status")), _text(line.get("content"))
    if status in FAILED or (status == "DONE" and output):
        content, cut = clip(output)
        payloads.append(ToolResulted(tool_use_id=key, is_error=status in FAILED,
                                     content=content, truncated=cut, **common))
    return payloads


def _tool_input(line: Obj) -> Obj:
    """The step's fields beyond the common ones (the tool's own payload), bounded in size."""
    extra = {k: v for k, v in line.items() if k not in STEP_FIELDS}
    if len(extra) == 1 and (nested := as_obj(next(iter(extra.values())))):
        extra = nested  # {"input": {...}} or {"runCommand": {...}}: the name says which
    raw = json.dumps(extra)
    return extra if len(raw) <= MAX_INPUT_CHARS else {"raw": raw[:MAX_INPUT_CHARS]}


# -- small readers -----------------------------------------------------------------------------


def _name(value: object) -> str | None:
    """An enum name upper-cased, without its ``CORTEX_STEP_*_`` prefix; None if not a name."""
    text = as_str(value)
    if not text or not text.strip():
        return None
    name = text.strip().upper()
    for prefix in PREFIXES:
        name = name.removeprefix(prefix)
    return name


def _text(value: object) -> str:
    """A string as is; any other JSON value (an object, a list) as JSON; null as ''."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _user_request(text: str) -> str:
    """The request inside ``<USER_REQUEST>`` when the input wraps it in metadata."""
    match = USER_REQUEST.search(text)
    return match["text"].strip() if match else text.strip()
