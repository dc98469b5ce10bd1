"""Cline, Roo Code and Kilo Code task records -> normalized session events (one parser).

The producer (:mod:`streams.producers.cline_family`) splits a task folder's three documents
into records ``{"kind", "index", "value"}``; each file gives what it alone holds, so nothing is
derived twice:

* ``ui`` (a ``ui_messages.json`` row ``{ts, type: say|ask, say|ask, text, partial,
  modelInfo?}``): prompts (``say: task`` opens the task, ``say: user_feedback`` follows up),
  replies (``text``, ``completion_result``, ``ask: followup``), thinking (``reasoning``),
  notices (``error`` and the rest) and the token counts (``api_req_started``);
* ``api`` (an ``api_conversation_history.json`` element, Anthropic-shaped): tool calls
  (``tool_use`` blocks, or the XML tool tags older versions write in the text) and results
  (``tool_result`` blocks with ``is_error``), files touched from the tools' ``path``, the cwd
  and model named in ``<environment_details>``, Cline's ``modelInfo``. Its text repeats the
  ``ui`` rows and is not derived again;
* ``metadata`` (``task_metadata.json``): the model of ``model_usage[-1]`` (Cline).

Tokens come only from ``api_req_started`` (and ``api_req_finished`` / ``subagent_usage`` of
older and newer Cline), whose text is ``{tokensIn, tokensOut, cacheWrites, cacheReads, cost,
cancelReason?, apiProtocol?}``. ``tokensOut`` includes reasoning. Without ``apiProtocol``
(Cline, older Roo) ``tokensIn`` is the fresh input, disjoint from the cache counts. Roo and Kilo
rows that carry ``apiProtocol`` store the total input (Roo's ``totalInputTokens``: fresh +
cache writes + cache reads, for either protocol), so the cache counts are subtracted (clamped
at 0). A cancelled request's tokens were billed and are counted.

Traps: a row is rewritten in place while its request streams (same ``ts``): usage is keyed
``<task>:<ts>`` and the projection keeps the largest; texts overwrite by ``line_uuid``.
``deleted_api_reqs`` (the sum of requests removed by a checkpoint restore) repeats rows
already published, so it adds nothing. Cline's ``metrics`` on api-history messages repeat the
``api_req_started`` counts and are not read.
"""

from __future__ import annotations

import json
import re
from typing import Literal

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
    SystemEvent,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UsageReported,
    UserPrompted,
)
from schemas.file_changes import FileChanged
from streams.producers.cline_family import ClineProducer, KiloCodeProducer, RooCodeProducer

__all__ = ["decide"]

PROMPTS = frozenset({"task", "user_feedback"})
REPLIES = frozenset({"text", "completion_result"})
USAGE = frozenset({"api_req_started", "api_req_finished", "subagent_usage"})
SILENT_ASKS = frozenset({"tool", "command", "use_mcp_server", "browser_action_launch",
                         "completion_result", "command_output"})
WRITE_TOOLS = ("write_to_file", "replace_in_file", "apply_diff", "insert_content",
               "search_and_replace", "edit_file", "search_replace", "new_rule", "apply_patch")
FILE_ACCESS: dict[str, Literal["read", "write"]] = {
    "read_file": "read", **dict.fromkeys(WRITE_TOOLS, "write")}
XML_TOOLS = frozenset({*FILE_ACCESS, "execute_command", "list_files", "search_files",
                       "list_code_definition_names", "browser_action", "use_mcp_tool",
                       "access_mcp_resource", "ask_followup_question", "attempt_completion",
                       "new_task", "plan_mode_respond", "switch_mode", "update_todo_list",
                       "codebase_search", "web_fetch"})
XML_CALL = re.compile(r"<([a-z_]+)>(.*?)</\1>", re.DOTALL)
MODEL_TAG = re.compile(r"<model>([^<]+)</model>")
CWD_LINE = re.compile(r"# Current (?:Working|Workspace) Directory \((.+?)\) Files")


@parses(KiloCodeProducer)
@parses(RooCodeProducer)
@parses(ClineProducer)
def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events of one ``cline`` / ``roo-code`` / ``kilo-code`` record (pure,
    deterministic; ids derive from the input event). Unknown records become ``line.unknown``.

    Raises:
        InvalidEvent: the record is not a JSON object or its payloads do not fit the schemas.
    """
    return decide_lines(event, derive)


def derive(record: Obj, event: FileChanged) -> list[EventPayload]:
    """The payloads of one ``{"kind", "index", "value"}`` record."""
    kind, value = record.get("kind"), record.get("value")
    if isinstance(value, dict):
        if kind == "ui" and type(value.get("ts")) is int and value.get("type") in ("say", "ask"):
            return _ui(value, event)
        if kind == "api" and value.get("role") in ("user", "assistant"):
            return _api(value, record.get("index"), event)
        if kind == "metadata":
            return _metadata(value, event)
    raw = json.dumps(record, ensure_ascii=False)[:MAX_RAW_CHARS]
    return [UnknownLine(line_type=f"cline/{kind}", raw=raw, agent_id=event.payload.agent_id,
                        line_uuid=derive_event_id("cline-record", raw))]


# -- ui_messages.json ---------------------------------------------------------------------------


def _ui(row: Obj, event: FileChanged) -> list[EventPayload]:
    key = f"{event.session_id}:{row['ts']}"
    common: Common = {"line_uuid": key, "timestamp": parse_time(row["ts"]),
                      "agent_id": event.payload.agent_id}
    model = as_str(as_obj(row.get("modelInfo")).get("modelId"))
    text = as_str(row.get("text")) or ""
    subtype = as_str(row.get(row["type"])) or ""
    if row["type"] == "ask":
        if subtype == "followup":
            return [AssistantMessage(message_key=key, model=model, text=clip(text)[0], **common)]
        return [] if subtype in SILENT_ASKS else [
            SystemEvent(subtype=f"ask:{subtype}", content=clip(text)[0], **common)]
    if subtype in PROMPTS:
        body, truncated = clip(text)
        return [UserPrompted(text=body, truncated=truncated, is_meta=not body.strip(), **common)]
    if subtype in REPLIES or subtype == "reasoning":
        body, truncated = clip(text or as_str(row.get("reasoning")) or "")
        block = "thinking" if subtype == "reasoning" else "text"
        return [AssistantMessage(message_key=key, model=model, block_type=block, text=body,
                                 truncated=truncated, **common)]
    if subtype in USAGE:
        return _usage(text, key, model, common)
    if subtype in ("tool", "command", "command_output", "deleted_api_reqs"):
        return []  # calls come from the api history; deleted requests were counted already
    return [SystemEvent(subtype=subtype or None, content=clip(text)[0], **common)]


def _usage(text: str, key: str, model: str | None, common: Common) -> list[EventPayload]:
    try:
        info = json.loads(text)
    except ValueError:
        return []
    if not isinstance(info, dict):
        return []
    given = token_count(info.get("tokensIn"))
    writes = token_count(info.get("cacheWrites"))
    reads = token_count(info.get("cacheReads"))
    fresh = max(0, given - writes - reads) if info.get("apiProtocol") else given
    report = UsageReported(message_key=key, model=model, input_tokens=fresh,
                           output_tokens=token_count(info.get("tokensOut")),
                           cache_creation_5m_tokens=writes, cache_read_tokens=reads, **common)
    return [report] if report.total else []


# -- api_conversation_history.json ---------------------------------------------------------------


def _api(message: Obj, index: object, event: FileChanged) -> list[EventPayload]:
    key = f"{event.session_id}:api:{index}"
    common: Common = {"line_uuid": key, "timestamp": parse_time(message.get("ts")),
                      "agent_id": event.payload.agent_id}
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    if message["role"] == "user":
        return _user_blocks(blocks, common)
    payloads: list[EventPayload] = []
    model = as_str(as_obj(message.get("modelInfo")).get("modelId"))
    if model:
        payloads.append(SessionContext(model=model, **common))
    for n, block in enumerate(blocks):
        if block.get("type") == "tool_use" and as_str(block.get("id")):
            payloads.extend(_call(block["id"], as_str(block.get("name")) or "",
                                  as_obj(block.get("input")), key, common))
        elif block.get("type") == "text":
            for m, (name, args) in enumerate(_xml_calls(as_str(block.get("text")) or "")):
                payloads.extend(_call(f"{key}:{n}:{m}", name, args, key, common))
    return payloads


def _user_blocks(blocks: list[Obj], common: Common) -> list[EventPayload]:
    """Tool results, and the cwd / model the environment details name."""
    payloads: list[EventPayload] = []
    for block in blocks:
        if block.get("type") == "tool_result" and as_str(block.get("tool_use_id")):
            content, truncated = clip(blocks_text(block.get("content")))
            payloads.append(ToolResulted(
                tool_use_id=block["tool_use_id"], is_error=block.get("is_error") is True,
                content=content, truncated=truncated,
                **{**common, "line_uuid": f"{common['line_uuid']}:{block['tool_use_id']}"}))
    details = "\n".join(as_str(b.get("text")) or "" for b in blocks if b.get("type") == "text")
    model, cwd = MODEL_TAG.search(details), CWD_LINE.search(details)
    if model or cwd:
        payloads.append(SessionContext(model=model[1].strip() if model else None,
                                       cwd=cwd[1] if cwd else None, **common))
    return payloads


def _call(tool_use_id: str, name: str, args: Obj, key: str,
          common: Common) -> list[EventPayload]:
    own = {**common, "line_uuid": f"{key}:{tool_use_id}"}
    payloads: list[EventPayload] = [ToolCalled(tool_use_id=tool_use_id, name=name, input=args,
                                               message_key=key, **own)]
    access = FILE_ACCESS.get(name)
    files = args.get("files")
    listed = files if isinstance(files, list) else []
    paths = [as_str(args.get("path"))] + [as_str(as_obj(f).get("path")) for f in listed]
    if access:
        payloads.extend(FileTouched(path=path, tool=name, access=access,
                                    tool_use_id=tool_use_id, **own) for path in paths if path)
    return payloads


def _xml_calls(text: str) -> list[tuple[str, Obj]]:
    """The ``<tool><param>value</param></tool>`` calls older versions write in their text."""
    calls = []
    for found in XML_CALL.finditer(text):
        if found[1] in XML_TOOLS:
            args = {m[1]: m[2].strip() for m in XML_CALL.finditer(found[2])}
            calls.append((found[1], args))
    return calls


# -- task_metadata.json ------------------------------------------------------------------------


def _metadata(metadata: Obj, event: FileChanged) -> list[EventPayload]:
    """The model the task uses last (Cline's ``model_usage``)."""
    usage = metadata.get("model_usage")
    last = as_obj(usage[-1]) if isinstance(usage, list) and usage else {}
    model = as_str(last.get("model_id"))
    if not model:
        return []
    return [SessionContext(model=model, timestamp=parse_time(last.get("ts")),
                           agent_id=event.payload.agent_id)]
