"""A bound on a server's open connections, enforced where asyncio accepts them.

:class:`ConnectionGate` wraps a protocol factory (aiohttp's ``web.Server``): while fewer than
``limit`` connections are open each new one is handed to the wrapped handler and counted until
it is lost; beyond that it is answered ``503`` (``Retry-After: 1``) and closed at once, never
queued. So a flood of idle or half-sent connections cannot use up the process's file
descriptors, and one warning is logged per episode of refusals.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import cast

from aiohttp import web

__all__ = ["ConnectionGate"]

logger = logging.getLogger(__name__)


class ConnectionGate:
    """The protocol factory of one server: aiohttp's handler for each new connection while
    fewer than ``limit`` are open (counted from acceptance to close, exactly, so a burst of
    connections accepted together cannot overshoot), a 503 that closes at once beyond."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.open = 0
        self.refusing = False
        busy = json.dumps({"error": f"too many open connections (limit {limit}); retry "
                                    "shortly", "problems": []}).encode()
        self.busy = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(busy), busy))

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open >= self.limit:
            if not self.refusing:
                logger.warning("publish API: %s connections open, refusing new ones",
                               self.limit)
            self.refusing = True
            return _Refused(self.busy)
        self.refusing = False
        self.open += 1
        return _Counted(self.server(), self)


class _Counted(asyncio.Protocol):
    """Passes every event of its transport to aiohttp's ``handler``; frees its place in the
    gate when the connection is lost."""

    def __init__(self, handler: asyncio.Protocol, gate: ConnectionGate) -> None:
        self.handler = handler
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.open -= 1
        self.handler.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the limit: written ``answer`` and closed, whatever it sends."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(self.answer)
        writer.close()  # after the answer is flushed
