"""``trace-id``: the OTel trace id a session's trace is exported under (no server needed)."""

from __future__ import annotations

import click

from app.cli_base import cli
from projections.otel.session_spans import trace_id_hex

__all__ = ["trace_id"]


@cli.command("trace-id")
@click.argument("session_id", nargs=-1, required=True)
def trace_id(session_id: tuple[str, ...]) -> None:
    """Print the trace id of each SESSION_ID (32 hex digits, one per line).

    The id is the first 16 bytes of SHA-256 of `sessionstream:trace:<session id>`: search for
    it in Jaeger, Langfuse, LangSmith or Phoenix to open the session's trace (exported once the
    session has ended, when SESSIONSTREAM_OTLP_ENDPOINT is set).
    """
    for session in session_id:
        click.echo(trace_id_hex(session))
