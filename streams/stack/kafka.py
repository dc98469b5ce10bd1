"""Apache Kafka 4.1 as one combined KRaft node (broker + controller) on loopback.

Jars come from Maven Central (``java/kafka-pom.xml``); the log dir is formatted once with
``kafka.tools.StorageTool format --standalone`` and reused afterwards. Replication factor 1
everywhere, or consumer groups never form on a single node.
"""

from __future__ import annotations

import subprocess

from streams.errors import StackError
from streams.stack.base import Server
from streams.stack.java import check_java, ensure_jars, resource_path
from streams.stack.process import tcp_accepts

__all__ = ["KafkaServer"]

READY_LINE = "Kafka Server started"


class KafkaServer(Server):
    """``kafka://127.0.0.1:<port>``; ports from ``SESSIONSTREAM_STACK__KAFKA_PORT`` and
    ``SESSIONSTREAM_STACK__KAFKA_CONTROLLER_PORT``."""

    name = "kafka"

    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        stack = self.settings.stack
        return {
            "broker": (stack.kafka_port, 9092, "SESSIONSTREAM_STACK__KAFKA_PORT"),
            "controller": (stack.kafka_controller_port, 9093,
                           "SESSIONSTREAM_STACK__KAFKA_CONTROLLER_PORT"),
        }

    def endpoint_for(self, ports: dict[str, int]) -> str:
        return f"kafka://127.0.0.1:{ports['broker']}"

    def prepare(self) -> None:
        self.java = check_java(self.settings.stack.java, "Kafka")
        self.jars = ensure_jars("kafka", resource_path("kafka-pom.xml"), self.settings.cache_dir)

    def start(self, ports: dict[str, int]) -> None:
        config = self._write_config(ports)
        if not (self.directory / "data" / "meta.properties").exists():
            self._format(config)
        self.process.spawn(self._java_argv("kafka.Kafka", str(config)))

    def log_identity(self) -> str | None:
        """``kafka:<cluster id>``: the log on disk lives as long as its formatted data dir."""
        meta = self.directory / "data" / "meta.properties"
        try:
            fields = dict(line.split("=", 1) for line in meta.read_text().splitlines()
                          if "=" in line and not line.startswith("#"))
        except OSError:
            return None
        cluster = fields.get("cluster.id")
        return f"kafka:{cluster.strip()}" if cluster else None

    def is_ready(self, ports: dict[str, int]) -> bool:
        log = self.process.log_file
        return (tcp_accepts(ports["broker"]) and log.exists()
                and READY_LINE in log.read_text(errors="replace"))

    def _java_argv(self, main: str, *args: str) -> list[str]:
        return [
            self.java, "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Xshare:auto", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.directory}",
            "-cp", f"{self.jars / 'lib'}/*", main, *args,
        ]

    def _format(self, config: object) -> None:
        cluster = subprocess.run(
            self._java_argv("kafka.tools.StorageTool", "random-uuid"),
            capture_output=True, text=True, check=False,
        )
        cluster_id = cluster.stdout.strip().splitlines()[-1] if cluster.stdout.strip() else ""
        result = subprocess.run(
            self._java_argv("kafka.tools.StorageTool", "format", "--standalone",
                            "-t", cluster_id, "-c", str(config)),
            capture_output=True, text=True, check=False,
        )
        if cluster.returncode != 0 or result.returncode != 0:
            raise StackError("formatting Kafka's log dir failed:\n"
                             + (cluster.stderr + result.stdout + result.stderr)[-2000:])

    def _write_config(self, ports: dict[str, int]):  # noqa: ANN202 - Path
        self.directory.mkdir(parents=True, exist_ok=True)
        broker, controller = ports["broker"], ports["controller"]
        config = self.directory / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker},"
            f"CONTROLLER://127.0.0.1:{controller}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.directory / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "",
        ]))
        (self.directory / "log4j2.properties").write_text("\n".join([
            "status = warn",
            "appender.console.type = Console",
            "appender.console.name = STDOUT",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRefs = stdout",
            "rootLogger.appenderRef.stdout.ref = STDOUT",
            "logger.kafka.name = kafka",
            "logger.kafka.level = WARN",
            "logger.server.name = kafka.server.KafkaRaftServer",
            "logger.server.level = INFO",
            "logger.org.name = org.apache.kafka",
            "logger.org.level = WARN",
            "",
        ]))
        return config
