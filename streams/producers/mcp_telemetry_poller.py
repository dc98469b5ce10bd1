"""The telemetry poller: call an MCP server's tools on an interval, publish each result.

Every ``interval_s`` the :class:`TelemetryPoller` calls each configured tool once, one after the
other, and publishes a :class:`~schemas.telemetry.ToolPolled` envelope per call made (failed
calls too, ``ok=False``). Per call: a timeout per attempt, bounded retries with exponential
backoff and jitter (tenacity) for transient failures only (``SourceUnavailable``), and a
:class:`CircuitBreaker` per server. Graceful degradation: a tool that fails never stops the
others, and nothing escapes :meth:`TelemetryPoller.run` but cancellation, so the worker it
runs in keeps going whatever the server does.

The breaker is :class:`streams.breaker.CircuitBreaker` (shared with the LLM summarizer); its
names are re-exported here for the poller's existing callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime

import httpx
from aiokafka.errors import KafkaError
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from schemas.telemetry import (
    TelemetryKey,
    TelemetryPolledEvent,
    ToolPolled,
    flatten_numbers,
    tool_polled_event,
)
from streams.breaker import BreakerState, CircuitBreaker, Clock
from streams.errors import SourceRejected, SourceUnavailable
from streams.producers.mcp_telemetry_client import McpClient, ToolResult
from streams.settings import Settings

__all__ = ["BreakerState", "CircuitBreaker", "PollerMetrics", "Publish", "TelemetryPoller"]

logger = logging.getLogger(__name__)

Publish = Callable[[TelemetryKey, TelemetryPolledEvent], Awaitable[None]]
"""Sends one event; may raise ``KafkaError``, ``OSError`` or ``TimeoutError`` (counted, dropped)."""

SERVER = "sessionstream.mcp.server"
TOOL = "gen_ai.tool.name"
REASON = "error.type"


class PollerMetrics:
    """The poller's own instruments: cycles, errors, cycle duration, breaker state and moves."""

    def __init__(self, meter: Meter, server: str) -> None:
        self.server = {SERVER: server}
        self.breaker: CircuitBreaker | None = None
        self.cycles = meter.create_counter(
            "sessionstream.telemetry.poll.cycles", "{cycle}", "Poll cycles run.")
        self.errors = meter.create_counter(
            "sessionstream.telemetry.poll.errors", "{error}",
            "Tool calls that failed or were skipped, by tool and error.type "
            "(unavailable, rejected, unknown_tool, circuit_open, publish, internal).")
        self.duration = meter.create_histogram(
            "sessionstream.telemetry.poll.duration", "s", "Duration of one poll cycle.")
        self.transitions = meter.create_counter(
            "sessionstream.telemetry.breaker.transitions", "{transition}",
            "Circuit breaker state changes, by from and to state.")
        meter.create_observable_gauge(
            "sessionstream.telemetry.breaker.state", [self._state], "{state}",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.")

    def error(self, tool: str, reason: str) -> None:
        self.errors.add(1, {**self.server, TOOL: tool, REASON: reason})

    def transition(self, old: BreakerState, new: BreakerState) -> None:
        self.transitions.add(1, {**self.server, "from": old.name.lower(),
                                 "to": new.name.lower()})

    def _state(self, options: CallbackOptions) -> Iterable[Observation]:
        breaker = self.breaker
        return [] if breaker is None else [Observation(int(breaker.state), self.server)]


class TelemetryPoller:
    """Polls ``tools`` of the MCP server at ``url`` every ``interval_s`` until stopped."""

    def __init__(self, url: str, tools: Sequence[str], publish: Publish, meter: Meter, *,
                 interval_s: float = 30.0, timeout_s: float = 5.0, retries: int = 2,
                 breaker_threshold: int = 3, breaker_reset_s: float = 30.0,
                 token: str | None = None, backoff_s: float = 0.2, backoff_max_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Clock = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.url = url
        self.tools = list(tools)
        self.publish = publish
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.token = token
        self.transport = transport
        self.metrics = PollerMetrics(meter, url)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_reset_s, clock=clock,
                                      on_transition=self.metrics.transition)
        self.metrics.breaker = self.breaker
        self._retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1), reraise=True, sleep=sleep,
            retry=retry_if_exception_type(SourceUnavailable),
            wait=wait_exponential_jitter(multiplier=backoff_s, max=backoff_max_s,
                                         jitter=backoff_s))
        self.client: McpClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings, publish: Publish, meter: Meter
                      ) -> TelemetryPoller | None:
        """The poller ``SESSIONSTREAM_MCP_*`` describe, or None when ``MCP_URL`` is unset."""
        if settings.mcp_url is None:
            return None
        token = settings.mcp_token.get_secret_value() if settings.mcp_token else None
        return cls(settings.mcp_url, settings.mcp_tools, publish, meter,
                   interval_s=settings.mcp_interval_s, timeout_s=settings.mcp_timeout_s,
                   retries=settings.mcp_retries, breaker_threshold=settings.mcp_breaker_threshold,
                   breaker_reset_s=settings.mcp_breaker_reset_s, token=token)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set. Only cancellation escapes; the session ends on the way."""
        async with httpx.AsyncClient(transport=self.transport,
                                     timeout=httpx.Timeout(self.timeout_s)) as http:
            self.client = McpClient(self.url, http, token=self.token)
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    await self.poll_once()
                    remaining = self.interval_s - (time.monotonic() - started)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(remaining, 0.0))
            finally:
                await asyncio.shield(self.client.close())

    async def poll_once(self) -> None:
        """One cycle: each tool once, in order. Never raises but cancellation."""
        assert self.client is not None, "run() creates the client"
        started = time.monotonic()
        for tool in self.tools:
            try:
                await self._poll_tool(self.client, tool)
            except Exception:  # noqa: BLE001 - the one boundary: telemetry must not stop the worker
                logger.exception("mcp poll of %s crashed; the next cycle goes on", tool)
                self.metrics.error(tool, "internal")
        self.metrics.cycles.add(1, self.metrics.server)
        self.metrics.duration.record(time.monotonic() - started, self.metrics.server)

    async def _poll_tool(self, client: McpClient, tool: str) -> None:
        if not self.breaker.allow():
            self.metrics.error(tool, "circuit_open")
            return
        polled_at = datetime.now(UTC)
        started = time.monotonic()
        result: ToolResult | None = None
        error: str | None = None
        try:
            result = await self._retrying(self._call, client, tool)
        except SourceUnavailable as exc:
            self.breaker.failed()
            error, reason = str(exc), "unavailable"
        except SourceRejected as exc:
            self.breaker.succeeded()  # the server answered: it is up
            error = str(exc)
            reason = "unknown_tool" if isinstance(exc, _UnknownTool) else "rejected"
        else:
            self.breaker.succeeded()
        if error is not None:
            logger.warning("mcp tool=%s failed (%s): %s", tool, reason, error)
            self.metrics.error(tool, reason)
        payload = ToolPolled(
            server=self.url, tool=tool, ok=result is not None,
            duration_ms=(time.monotonic() - started) * 1000,
            size_bytes=result.size_bytes if result else 0,
            result=result.result if result else None, error=error,
            values=flatten_numbers(result.result) if result else {},
        )
        await self._publish(payload, polled_at)

    async def _call(self, client: McpClient, tool: str) -> ToolResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                if not client.connected:
                    await client.connect()
                if tool not in client.tools:
                    raise _UnknownTool(f"tool {tool} is not offered by {self.url}")
                return await client.call_tool(tool)
        except TimeoutError as exc:
            client.reset()  # a half-read session is not worth keeping
            raise SourceUnavailable(f"{tool}: no answer within {self.timeout_s} s") from exc
        except SourceUnavailable:
            client.reset()
            raise

    async def _publish(self, payload: ToolPolled, polled_at: datetime) -> None:
        key = TelemetryKey(server=payload.server, tool=payload.tool)
        try:
            await self.publish(key, tool_polled_event(payload, polled_at))
        except (KafkaError, OSError, TimeoutError) as exc:
            logger.warning("mcp tool=%s result not published: %s", payload.tool, exc)
            self.metrics.error(payload.tool, "publish")


class _UnknownTool(SourceRejected):
    """A configured tool the server's ``tools/list`` does not offer."""
