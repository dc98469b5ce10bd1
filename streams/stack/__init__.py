"""The local stack: real servers on loopback without Docker, for contributors and the tests.

``Stack(settings).up()`` starts (or finds running) Apache Kafka 4.1, Tansu, PostgreSQL,
Neo4j 5.26, Prometheus and Jaeger under ``<state_dir>/stack/``, in parallel, each waiting for
readiness with a timeout; ``down()`` stops them all; ``status()`` says what runs where. Every
call is idempotent and works across processes: the state lives in the state dir, not in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.base import Server, ServerStatus
from streams.stack.jaeger import JaegerServer
from streams.stack.kafka import KafkaServer
from streams.stack.neo4j import Neo4jServer
from streams.stack.postgres import PostgresServer
from streams.stack.prometheus import PrometheusServer
from streams.stack.tansu import TansuServer

__all__ = ["SERVERS", "Server", "ServerStatus", "Stack"]

logger = logging.getLogger(__name__)

SERVERS: dict[str, type[Server]] = {
    cls.name: cls
    for cls in (KafkaServer, TansuServer, PostgresServer, Neo4jServer, PrometheusServer,
                JaegerServer)
}

Report = Callable[[str], None]


class Stack:
    """The servers named in ``SERVERS``, driven as one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servers = {name: cls(settings) for name, cls in SERVERS.items()}

    def select(self, names: Iterable[str] | None) -> list[Server]:
        chosen = list(names or self.servers)
        unknown = [n for n in chosen if n not in self.servers]
        if unknown:
            raise StackError(f"unknown server(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(self.servers)}")
        return [self.servers[n] for n in chosen]

    def up(
        self, names: Iterable[str] | None = None, report: Report = logger.info
    ) -> dict[str, str]:
        """Start the chosen servers in parallel; return ``{name: endpoint}``.

        Every server is attempted even when another fails; then one :class:`StackError` lists
        each failure. Servers already running are left as they are.
        """
        servers = self.select(names)
        endpoints: dict[str, str] = {}
        failures: list[str] = []

        def start(server: Server) -> None:
            started = time.monotonic()
            try:
                endpoints[server.name] = server.up()
            except StackError as exc:
                failures.append(f"{server.name}: {exc}")
                report(f"{server.name:<11} FAILED")
                return
            report(f"{server.name:<11} ready at {endpoints[server.name]} "
                   f"({time.monotonic() - started:.1f} s)")

        with ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
            list(pool.map(start, servers))
        if failures:
            raise StackError("\n".join(failures))
        return endpoints

    def down(self, names: Iterable[str] | None = None, report: Report = logger.info) -> None:
        """Stop the chosen servers (all by default) and every process they spawned."""
        servers = self.select(names)
        with ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
            stopped = list(pool.map(lambda s: (s.name, s.down()), servers))
        for name, was_running in stopped:
            report(f"{name:<11} {'stopped' if was_running else 'was not running'}")

    def status(self) -> list[ServerStatus]:
        return [server.status() for server in self.servers.values()]

    def endpoint(self, name: str) -> str | None:
        """The running server's endpoint, or None."""
        return self.servers[name].endpoint()
