"""A minimal MCP client over streamable HTTP: initialize, tools/list, tools/call, nothing else.

Each JSON-RPC request is one ``POST`` to the server's endpoint; the answer is either
``application/json`` or a ``text/event-stream`` whose ``data:`` lines carry JSON-RPC messages,
of which the one with the request's id is the response. The ``Mcp-Session-Id`` the server
returns on ``initialize`` is sent back on every later request; a 404 means the session is gone
(the server restarted) and the next call initializes again. Errors are translated once, here:

* transport failures, timeouts, HTTP 5xx/429, an expired session, a malformed answer
  -> :class:`~streams.errors.SourceUnavailable` (transient: retry, count toward the breaker);
* a JSON-RPC error, a tool result with ``isError``, any other HTTP 4xx
  -> :class:`~streams.errors.SourceRejected` (the server is up and said no).

The ``mcp`` SDK ships a full client, but it runs on anyio task groups and its own HTTP stack,
which is more machinery than three request types need; this stays on ``httpx``, as asked.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import httpx

from streams.errors import SourceRejected, SourceUnavailable

__all__ = ["PROTOCOL_VERSION", "McpClient", "ToolResult", "sse_data"]

PROTOCOL_VERSION = "2025-06-18"
_ACCEPT = "application/json, text/event-stream"


@dataclass(frozen=True)
class ToolResult:
    """What ``tools/call`` returned: the result as JSON, and the response's size in bytes."""

    result: Any
    size_bytes: int


class McpClient:
    """One MCP session with the server at ``url``, over the caller's ``http`` client.

    Not safe for concurrent calls (one request at a time keeps the session handling simple).
    """

    def __init__(self, url: str, http: httpx.AsyncClient, *, token: str | None = None,
                 client_name: str = "sessionstream", client_version: str = "0") -> None:
        self.url = url
        self.http = http
        self.token = token
        self.client_info = {"name": client_name, "version": client_version}
        self.session_id: str | None = None
        self.protocol_version: str | None = None  # None: not initialized
        self.tools: frozenset[str] = frozenset()
        self._ids = itertools.count(1)

    async def connect(self) -> None:
        """``initialize``, ``notifications/initialized`` and ``tools/list`` (into ``tools``).

        Raises ``SourceUnavailable`` or ``SourceRejected``; the client stays disconnected then.
        """
        self.reset()
        result, _ = await self._request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": self.client_info,
        })
        self.protocol_version = str(result.get("protocolVersion") or PROTOCOL_VERSION)
        try:
            await self._notify("notifications/initialized")
            self.tools = frozenset(await self.list_tools())
        except (SourceUnavailable, SourceRejected):
            self.reset()
            raise

    def reset(self) -> None:
        """Forget the session: the next call initializes again."""
        self.session_id = None
        self.protocol_version = None
        self.tools = frozenset()

    @property
    def connected(self) -> bool:
        return self.protocol_version is not None

    async def list_tools(self) -> list[str]:
        """The names ``tools/list`` reports (all pages)."""
        names: list[str] = []
        cursor: str | None = None
        while True:
            result, _ = await self._request("tools/list", {"cursor": cursor} if cursor else {})
            names += [str(t["name"]) for t in result.get("tools", []) if "name" in t]
            cursor = result.get("nextCursor")
            if not cursor:
                return names

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> ToolResult:
        """Call ``name``; connects first if needed. ``isError`` raises ``SourceRejected``."""
        if not self.connected:
            await self.connect()
        result, size = await self._request("tools/call",
                                           {"name": name, "arguments": arguments or {}})
        if result.get("isError"):
            raise SourceRejected(f"tool {name} failed: {_text_of(result) or 'no message'}")
        return ToolResult(_result_of(result), size)

    async def close(self) -> None:
        """End the session on the server (best effort: the server may already be gone)."""
        if self.session_id is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(self.url, headers=self._headers())
        self.reset()

    # -- JSON-RPC over HTTP ---------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": _ACCEPT}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _post(self, message: dict[str, Any]) -> httpx.Response:
        try:
            response = await self.http.post(self.url, json=message, headers=self._headers())
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(f"{self.url}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404 and self.session_id is not None:
            self.reset()
            raise SourceUnavailable(f"{self.url}: session expired (404)")
        if response.status_code >= 500 or response.status_code == 429:
            raise SourceUnavailable(f"{self.url}: HTTP {response.status_code}",
                                    _retry_after(response))
        if response.status_code >= 400:
            raise SourceRejected(f"{self.url}: HTTP {response.status_code}: "
                                 f"{response.text[:200]}")
        return response

    async def _notify(self, method: str) -> None:
        await self._post({"jsonrpc": "2.0", "method": method})

    async def _request(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        request_id = next(self._ids)
        response = await self._post({"jsonrpc": "2.0", "id": request_id, "method": method,
                                     "params": params})
        if method == "initialize":
            self.session_id = response.headers.get("mcp-session-id")
        message = _response_of(response, request_id)
        if "error" in message:
            error = message["error"] or {}
            raise SourceRejected(f"{method}: JSON-RPC error {error.get('code')}: "
                                 f"{error.get('message')}")
        result = message.get("result")
        if not isinstance(result, dict):
            raise SourceUnavailable(f"{method}: response without a result object")
        return result, len(response.content)


def _response_of(response: httpx.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response with ``request_id`` in a JSON or SSE body."""
    content_type = response.headers.get("content-type", "")
    try:
        if content_type.startswith("text/event-stream"):
            messages = [json.loads(data) for data in sse_data(response.text)]
        else:
            body = response.json()
            messages = body if isinstance(body, list) else [body]
    except ValueError as exc:
        raise SourceUnavailable(f"malformed JSON-RPC answer: {exc}") from exc
    for message in messages:
        if isinstance(message, dict) and message.get("id") == request_id and (
                "result" in message or "error" in message):
            return message
    raise SourceUnavailable(f"no JSON-RPC response with id {request_id} in the answer")


def sse_data(text: str) -> list[str]:
    """The data of each event of an SSE body (multi-line ``data:`` joined with newlines)."""
    events: list[str] = []
    lines: list[str] = []
    for line in [*text.splitlines(), ""]:
        if not line:
            if lines:
                events.append("\n".join(lines))
                lines = []
        elif line.startswith("data:"):
            data = line[5:]
            lines.append(data[1:] if data.startswith(" ") else data)
    return events


def _text_of(result: dict[str, Any]) -> str:
    return "\n".join(str(block.get("text", "")) for block in result.get("content") or []
                     if isinstance(block, dict) and block.get("type") == "text")


def _result_of(result: dict[str, Any]) -> Any:
    """structuredContent if present, else the text content parsed as JSON, else the text.

    The SDKs wrap a tool's ``str`` return as ``{"result": "<the text>"}``; that wrapper is
    looked through, so a tool returning JSON text yields the JSON."""
    structured = result.get("structuredContent")
    if structured is not None and not (
            isinstance(structured, dict) and list(structured) == ["result"]
            and isinstance(structured["result"], str)):
        return structured
    text = _text_of(result)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
