"""Each server of the local stack is real: a round trip through the client the app uses.

Kafka tests run twice, on Apache Kafka 4.1 and on Tansu (the ``broker_url`` fixture).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import neo4j
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, start_http_server

from streams.settings import Settings
from tests.integration.pipeline_helpers import assert_running, log_tail, stop_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent


def _bootstrap(url: str) -> str:
    return url.removeprefix("kafka://")


async def test_aiokafka_produce_and_consume(broker_url: str, topic_name: str) -> None:
    sent = [(f"session-{i % 3}".encode(), f"event-{i}".encode()) for i in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(broker_url))
    await producer.start()
    try:
        for key, value in sent:
            await producer.send_and_wait(topic_name, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic_name, bootstrap_servers=_bootstrap(broker_url), group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                received += [(m.key, m.value) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    # Kafka orders per partition, and a key always lands on one partition: compare per key.
    def by_key(pairs: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
        grouped: dict[bytes, list[bytes]] = {}
        for key, value in pairs:
            grouped.setdefault(key, []).append(value)
        return grouped

    assert by_key(received) == by_key(sent)
    assert len(received) == len(sent)


async def test_faust_worker_consumes_a_topic(
    broker_url: str, topic_name: str, test_settings: Settings
) -> None:
    out = test_settings.state_dir / "faust-echo" / f"{uuid.uuid4().hex}.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ, "ECHO_APP_ID": f"echo-{uuid.uuid4().hex[:8]}", "ECHO_BROKER": broker_url,
        "ECHO_TOPIC": topic_name, "ECHO_OUT": str(out),
        "ECHO_DATADIR": str(test_settings.state_dir / "faust-echo"),
    }
    log = out.with_suffix(".log")
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, str(HERE / "faust_echo_app.py"), "worker", "--without-web", "-l",
             "warn"], env=env, cwd=HERE, stdout=handle, stderr=subprocess.STDOUT,
        )
    try:
        producer = AIOKafkaProducer(bootstrap_servers=_bootstrap(broker_url))
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic_name, f"hello-{i}".encode())
        finally:
            await producer.stop()

        def five_echoed() -> bool:
            assert_running(worker, log)
            return out.exists() and len(out.read_bytes().splitlines()) >= 5

        await eventually(five_echoed, "five values echoed", timeout=90, interval=0.5,
                         detail=lambda: log_tail(log))
    finally:
        stop_cli(worker, timeout=30)
    lines = out.read_bytes().splitlines()
    # Unkeyed values may be spread over partitions (Tansu auto-creates several): compare sets.
    assert sorted(lines) == [f"hello-{i}".encode() for i in range(5)], log_tail(log)


async def test_postgres_round_trip(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, body jsonb NOT NULL)")
        await conn.executemany("INSERT INTO t VALUES ($1, $2)", [(1, '{"a": 1}'), (2, "[]")])
        rows = await conn.fetch("SELECT id, body FROM t ORDER BY id")
        version = await conn.fetchval("SHOW server_version_num")
    finally:
        await conn.close()
    assert [(r["id"], r["body"]) for r in rows] == [(1, '{"a": 1}'), (2, "[]")]
    assert int(version) >= 160000


async def test_neo4j_merge_and_read_back(neo4j_driver: neo4j.AsyncDriver) -> None:
    for _ in range(2):  # MERGE is idempotent: twice gives one node and one edge
        await neo4j_driver.execute_query(
            "MERGE (p:Project {id: $p}) MERGE (s:Session {id: $s}) MERGE (p)-[:HAS_SESSION]->(s)",
            p="proj", s="sess-1",
        )
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (p:Project)-[r:HAS_SESSION]->(s:Session) RETURN p.id AS p, s.id AS s, count(r) AS n"
    )
    assert [(r["p"], r["s"], r["n"]) for r in records] == [("proj", "sess-1", 1)]
    components, _, _ = await neo4j_driver.execute_query(
        "CALL dbms.components() YIELD versions RETURN versions[0] AS v"
    )
    assert components[0]["v"].startswith("5.26.")


async def test_prometheus_scrapes_the_metrics_port(
    stack: dict[str, str], test_settings: Settings
) -> None:
    registry = CollectorRegistry()
    marker = f"m{uuid.uuid4().hex[:8]}"
    counter = Counter("sessionstream_harness", "scrape check", ["run"], registry=registry)
    counter.labels(marker).inc(7)
    server, thread = start_http_server(test_settings.metrics_port, "127.0.0.1", registry=registry)
    try:
        query = f'sessionstream_harness_total{{run="{marker}"}}'
        async with httpx.AsyncClient(base_url=stack["prometheus"]) as client:
            async def scraped() -> list[dict[str, Any]]:
                answer = await client.get("/api/v1/query", params={"query": query})
                return answer.json()["data"]["result"]

            [series] = await eventually(scraped, f"Prometheus to scrape {query}", timeout=30,
                                        interval=0.5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert float(series["value"][1]) == 7.0
