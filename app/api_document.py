"""The OpenAPI 3.1 document of the worker's HTTP API: every route the server answers (publish,
health, the read API and this document itself), served at :data:`OPENAPI_PATH`.

Written by hand beside the routes it describes; a test compares its paths and methods with
the routes the server registers and validates it against the OpenAPI 3.1 schema.
"""

from __future__ import annotations

from typing import Any

from projections.postgres.session_reads import USAGE_GROUPINGS
from projections.postgres.session_search import KINDS
from streams import __version__

__all__ = ["API_DOCUMENT", "OPENAPI_PATH"]

OPENAPI_PATH = "/api/v1/openapi.json"

_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_INT = {"type": "integer"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            **({"required": required} if required else {})}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_REASONS = {400: "a bad or unknown query parameter, named in the message",
            401: "missing or wrong bearer token (a token is configured)",
            403: "sent by a web page (an Origin header) while no token is configured",
            404: "no such session", 503: "Postgres cannot be reached; retry"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_REASONS[s], _ref("Error")) for s in statuses}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_SINCE = _query("since", "ISO 8601 date or date-time; no time zone means UTC.",
                {"type": "string"})
_LIMIT = _query("limit", "Rows per page (1 to 500).",
                {"type": "integer", "minimum": 1, "maximum": 500})
_OFFSET = _query("offset", "Rows to skip.", {"type": "integer", "minimum": 0})
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
       "description": "The session id (may hold '/', as is or encoded as %2F)."}
_READ_ERRORS = (400, 401, 403, 503)


def _read(summary: str, ok: dict[str, Any], parameters: list[dict[str, Any]],
          errors: tuple[int, ...] = _READ_ERRORS) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters,
                    "responses": {"200": ok, **_errors(*errors)}}}


_SESSION_FIELDS = {
    "id": {"type": "string"}, "source": {"type": "string"}, "title": _TEXT, "project": _TEXT,
    "working_dir": _TEXT, "status": {"type": "string"}, "started_at": _TIME,
    "last_activity_at": _TIME, "ended_at": _TIME, "prompts": _INT, "tool_calls": _INT,
    "files_touched": _INT, "total_tokens": _INT, "cost_usd": {"type": "number"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": _object(["error", "problems"], error={"type": "string"},
                     problems={"type": "array", "items": {"type": "string"}}),
    "Session": _object(list(_SESSION_FIELDS), **_SESSION_FIELDS),
    "SessionDetail": {"allOf": [_ref("Session"), _object(
        ["summary", "llm_summary"], summary={"type": ["object", "null"]}, llm_summary=_TEXT,
        llm_model=_TEXT, llm_summarized_at=_TIME, resumed_from=_TEXT, forked_from=_TEXT,
        copied_until=_TIME)],
        "description": "Every column of the sessions table, and the session's summaries."},
    "Message": _object(
        ["role", "message_key", "at", "text", "is_meta", "copied"],
        role={"enum": ["user", "assistant"]}, message_key={"type": "string"},
        agent_id=_TEXT, model=_TEXT, at=_TIME, text=_TEXT, is_meta={"type": "boolean"},
        copied={"type": "boolean", "description": "Part of the prefix copied from the origin."}),
    "ToolCall": _object(
        ["tool_use_id", "name", "outcome"], tool_use_id={"type": "string"}, name=_TEXT,
        agent_id=_TEXT, outcome={"enum": ["ok", "error", "pending"]}, called_at=_TIME,
        resulted_at=_TIME, input=_TEXT, result_excerpt=_TEXT, copied={"type": "boolean"}),
    "File": _object(["path", "reads", "writes"], path={"type": "string"}, reads=_INT,
                    writes=_INT, first_at=_TIME, last_at=_TIME,
                    tools={"type": "array", "items": {"type": "string"}}),
    "UsageRow": _object(
        ["key", "total_tokens", "cost_usd"], key=_TEXT, input_tokens=_INT, output_tokens=_INT,
        cache_creation_tokens=_INT, cache_read_tokens=_INT, total_tokens=_INT,
        responses=_INT, cost_usd={"type": "number"},
        unpriced_models={"type": "array", "items": {"type": "string"}}),
    "SearchHit": _object(
        ["session_id", "kind", "snippet", "rank"], session_id={"type": "string"},
        source={"type": "string"}, project=_TEXT, title=_TEXT, kind={"enum": list(KINDS)},
        at=_TIME, snippet={"type": "string"}, rank={"type": "number"}),
}


def _page(items: str, schema: str, **extra: Any) -> dict[str, Any]:
    return _object(None, **{items: {"type": "array", "items": _ref(schema)}}, limit=_INT,
                   offset=_INT, next={"type": ["string", "null"],
                                      "description": "The next page's path, or null."},
                   **extra)


_PATHS: dict[str, Any] = {
    "/api/v1/events": {"post": {
        "summary": "Publish events to a topic (one object, an array, {topic, events}, or "
                   "JSON lines), once per Idempotency-Key.",
        "parameters": [_query("topic", "The topic, unless the body names it.",
                              {"type": "string"}),
                       {"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {}}, "application/x-ndjson": {"schema": {}}}},
        "responses": {
            "201": _json("published", {"type": "object"}),
            "200": _json("already published with this key", {"type": "object"}),
            **{str(s): _json(reason, _ref("Error")) for s, reason in (
                (400, "not JSON, no topic or a bad key"), (401, "missing or wrong token"),
                (403, "sent by a web page without a configured token"),
                (404, "unknown topic"), (408, "body too slow"),
                (409, "key reused for other content"), (413, "too large"),
                (415, "not JSON or an unsupported encoding"), (422, "invalid events"),
                (503, "the broker did not acknowledge; retry with the same key"))}}}},
    "/api/v1/health": {"get": {
        "summary": "Deep health: broker, stores, lag; and the publishable topics.",
        "security": [],
        "responses": {"200": _json("healthy", {"type": "object"}),
                      "503": _json("not healthy", {"type": "object"})}}},
    OPENAPI_PATH: {"get": {"summary": "This document.", "security": [],
                           "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})}}},
    "/api/v1/sessions": _read(
        "Sessions, newest activity first.",
        _json("one page", _page("sessions", "Session", total=_INT)),
        [_query("source", "Only this source (claude-code, codex, ...).", {"type": "string"}),
         _query("project", "Only this project.", {"type": "string"}),
         _query("status", "Only this status (active, closed, ...).", {"type": "string"}),
         _SINCE, _LIMIT, _OFFSET]),
    "/api/v1/sessions/{id}": _read(
        "One session with its summaries.", _json("the session", _ref("SessionDetail")),
        [_ID], (*_READ_ERRORS, 404)),
    "/api/v1/sessions/{id}/messages": _read(
        "The session's prompts and replies in time order.",
        _json("one page", _page("messages", "Message", session_id={"type": "string"})),
        [_ID, _LIMIT, _OFFSET], (*_READ_ERRORS, 404)),
    "/api/v1/sessions/{id}/tools": _read(
        "The session's tool calls in call order.",
        _json("every call", _object(None, session_id={"type": "string"}, tool_calls={
            "type": "array", "items": _ref("ToolCall")})), [_ID], (*_READ_ERRORS, 404)),
    "/api/v1/sessions/{id}/files": _read(
        "The files the session touched.",
        _json("every file", _object(None, session_id={"type": "string"}, files={
            "type": "array", "items": _ref("File")})), [_ID], (*_READ_ERRORS, 404)),
    "/api/v1/usage": _read(
        "Token and cost totals (each API response once).",
        _json("one row per group", _object(None, by={"type": "string"}, since=_TIME, rows={
            "type": "array", "items": _ref("UsageRow")})),
        [_query("by", "How to group.", {"enum": list(USAGE_GROUPINGS), "default": "session"}),
         _SINCE]),
    "/api/v1/search": _read(
        "Full-text search of prompts, replies, tool calls and tool results, best first.",
        _json("the hits", _object(None, query={"type": "string"}, hits={
            "type": "array", "items": _ref("SearchHit")})),
        [{**_query("q", "Web-search syntax: words, \"a phrase\", or, -word.",
                   {"type": "string"}), "required": True},
         _query("source", "Only this source.", {"type": "string"}),
         _query("project", "Only this project.", {"type": "string"}), _SINCE,
         _query("limit", "Hits (1 to 500).", {"type": "integer", "minimum": 1,
                                              "maximum": 500, "default": 20})]),
}

API_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "sessionstream worker API", "version": __version__,
             "description": "Publish events and read the sessions projected into Postgres. "
                            "With SESSIONSTREAM_API_TOKEN set every route but health and "
                            "this document needs the bearer token; without it, requests "
                            "with an Origin header are refused."},
    "paths": _PATHS,
    "components": {"schemas": _SCHEMAS, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "SESSIONSTREAM_API_TOKEN, when configured."}}},
    "security": [{"bearer": []}, {}],
}
