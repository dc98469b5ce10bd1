"""``sessionstream mcp``: serve the MCP tools of :mod:`app.mcp_server` to agents, over stdio (the
client starts the command) or streamable HTTP (one server, many clients).

The sessions are read from the Postgres the settings name, else from the embedded one, started
if needed (as ``usage`` does); the pipeline's state from the stores the settings name, else the
local stack's running servers. Over HTTP a token set in ``SESSIONSTREAM_API_TOKEN`` is required
of every request (``Authorization: Bearer <token>``), as the publish API requires it; listening
off loopback without one is refused. On stdio, stdout carries the protocol only: every message
of the command goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

import asyncpg
import click

from app.cli_base import cli, fails_cleanly, settings_of
from streams.errors import ConfigError
from streams.settings import Settings, is_loopback
from streams.stack import Stack

__all__ = ["DEFAULT_PORT", "mcp"]

DEFAULT_PORT = 8788
PATH = "/mcp"


@cli.command("mcp")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
              show_default=True,
              help="stdio: the client starts this command and talks over its stdin/stdout. "
                   f"http: streamable HTTP on http://HOST:PORT{PATH}, for clients that connect "
                   "to a running server.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface of the HTTP transport. Off loopback it needs "
                   "SESSIONSTREAM_API_TOKEN (else it is refused).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port of the HTTP transport.")
@click.pass_context
@fails_cleanly
def mcp(ctx: click.Context, transport: str, host: str, port: int) -> None:
    """Serve sessionstream to agents as an MCP server (Model Context Protocol).

    Read-only tools: list_sessions, search_sessions (full text), get_session (with its
    summaries), get_session_messages, get_session_tools, get_session_files, get_usage (by
    day, model, project, source or session), get_tracking_status (positions, lag, stores)
    and get_failed_items (dead letters per reason, the LLM retry queue). Sessions come from
    Postgres (the embedded one is started if needed); keep `sessionstream run` going to keep
    them fresh.

    \b
    Claude Code, stdio (the client starts the server):
      claude mcp add sessionstream -- sessionstream mcp
    \b
    Any MCP client, in its JSON config (.mcp.json, mcp.json, settings.json):
      {"mcpServers": {"sessionstream": {"command": "sessionstream", "args": ["mcp"]}}}
    \b
    Streamable HTTP (one server for several clients):
      sessionstream mcp --transport http --port 8788
      claude mcp add --transport http sessionstream http://127.0.0.1:8788/mcp
    \b
    Off loopback a token is required, and sent by the clients:
      SESSIONSTREAM_API_TOKEN=s3cret sessionstream mcp --transport http --host 0.0.0.0
      claude mcp add --transport http --header "Authorization: Bearer s3cret" \\
          sessionstream http://HOST:8788/mcp

    Use the full path of the command (e.g. .venv/bin/sessionstream) when it is not on the
    client's PATH, and give it the same SESSIONSTREAM_* settings as `run`. More, and other
    clients' configuration: docs/mcp.md.
    """
    settings = settings_of(ctx)
    token = settings.api_token.get_secret_value() if settings.api_token else None
    if transport == "http" and token is None and not is_loopback(host):
        raise ConfigError(f"refusing to serve MCP on {host} without a token: set "
                          "SESSIONSTREAM_API_TOKEN (clients send 'Authorization: Bearer "
                          "<token>'), or listen on --host 127.0.0.1")
    try:
        from app.mcp_server import build_server
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("mcp"):
            raise
        raise ConfigError("`sessionstream mcp` needs the MCP Python SDK: "
                          "pip install 'mcp==2.3.0'") from exc
    dsn = (settings.postgres_dsn.get_secret_value() if settings.postgres_dsn
           else Stack(settings).up(["postgres"], report=_to_stderr)["postgres"])
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops a server: not an error
        asyncio.run(_serve(build_server, settings, dsn, transport, host, port, token))


async def _serve(build_server: Any, settings: Settings, dsn: str, transport: str, host: str,
                 port: int, token: str | None) -> None:
    """Serve until the client closes stdin (stdio) or the process is interrupted (HTTP)."""
    import uvicorn  # the HTTP transport's server, installed with the MCP SDK

    # min_size=0: no connection before the first tool call, so a slow Postgres delays answers,
    # never the handshake
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=4)
    try:
        server = build_server(settings, pool)
        if transport == "stdio":
            await server.run_stdio_async()
            return
        app = server.streamable_http_app(streamable_http_path=PATH, host=host)
        config = uvicorn.Config(BearerToken(app, token) if token else app, host=host,
                                port=port, log_level="warning")
        _to_stderr(f"MCP over streamable HTTP on http://{host}:{port}{PATH}"
                   + (" (bearer token required)" if token else ""))
        await uvicorn.Server(config).serve()
    finally:
        await pool.close()


class BearerToken:
    """ASGI middleware: answers 401 to every HTTP request without
    ``Authorization: Bearer <token>`` (compared in constant time), passes the others on."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            from starlette.responses import JSONResponse

            refusal = JSONResponse(
                {"error": "missing or wrong bearer token: send 'Authorization: Bearer "
                          "<SESSIONSTREAM_API_TOKEN>'"},
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="sessionstream"'})
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        headers = dict(scope.get("headers") or [])
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)
