"""Neo4j 5.26 LTS community, embedded in a small Java launcher, with Bolt on loopback.

Jars come from Maven Central (``java/neo4j-pom.xml``); ``java/Neo4jLauncher.java`` runs as a
single-file program (Java 11+), prints a ready line once the database answers, and shuts the
database down cleanly on SIGTERM. Authentication is off: it listens on 127.0.0.1 only.
"""

from __future__ import annotations

from streams.stack.base import Server
from streams.stack.java import JAVA_OPENS, check_java, ensure_jars, resource_path
from streams.stack.process import tcp_accepts

__all__ = ["Neo4jServer"]

READY_LINE = "NEO4J READY"


class Neo4jServer(Server):
    """``bolt://127.0.0.1:<port>``; port from ``SESSIONSTREAM_STACK__NEO4J_BOLT_PORT``."""

    name = "neo4j"

    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        return {"bolt": (self.settings.stack.neo4j_bolt_port, 7687,
                         "SESSIONSTREAM_STACK__NEO4J_BOLT_PORT")}

    def endpoint_for(self, ports: dict[str, int]) -> str:
        return f"bolt://127.0.0.1:{ports['bolt']}"

    def prepare(self) -> None:
        self.java = check_java(self.settings.stack.java, "Neo4j")
        self.jars = ensure_jars("neo4j", resource_path("neo4j-pom.xml"), self.settings.cache_dir)

    def start(self, ports: dict[str, int]) -> None:
        home = self.directory / "data"
        home.mkdir(parents=True, exist_ok=True)
        self.process.spawn([
            self.java, "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", *JAVA_OPENS,
            "-cp", f"{self.jars / 'lib'}/*",
            str(resource_path("Neo4jLauncher.java")), str(home), "127.0.0.1", str(ports["bolt"]),
        ])

    def is_ready(self, ports: dict[str, int]) -> bool:
        log = self.process.log_file
        return (tcp_accepts(ports["bolt"]) and log.exists()
                and READY_LINE in log.read_text(errors="replace"))
