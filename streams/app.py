"""The faust application factory: one place that turns settings into a ``faust.App``.

Every faust setting that matters for delivery is passed explicitly, so faust's own environment
lookups are never a second source of truth. Values are chosen to work on both Apache Kafka and
Tansu: a session timeout of 10 s (Kafka's minimum is 6 s; Tansu holds each JoinGroup for half
of it), earliest offset reset (a new group reads a topic from its start), no web server unless
asked. Its Kafka clients retry every ``RETRY_BACKOFF_MS`` (see :mod:`streams.kafka_backoff`), so
a broker outage costs a few connection attempts per second, not a busy loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from streams.kafka_backoff import BackoffTransport, install_metadata_backoff

__all__ = ["create_app"]


def create_app(app_id: str, broker_url: str, datadir: Path, **overrides: Any) -> faust.App:
    """A faust app with sessionstream's delivery settings; ``overrides`` win over defaults."""
    (datadir / "faust").mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "broker": broker_url,
        "store": "memory://",
        "datadir": str(datadir / "faust" / app_id),
        "autodiscover": False,
        "topic_partitions": 1,
        "topic_replication_factor": 1,
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 3.0,
        "broker_commit_every": 100,
        "broker_commit_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        # Stopping must not wait for in-flight records: our agents ack a record only after
        # its outputs were confirmed, so an unacked record is simply read again after the
        # restart (same event ids). Waiting made a stuck agent hold Ctrl-C for 30 s and more.
        "stream_wait_empty": False,
        "web_enabled": False,
    }
    config.update(overrides)
    install_metadata_backoff()
    app = faust.App(app_id, **config)
    _use_backoff_transport(app)
    return app


def _use_backoff_transport(app: faust.App) -> None:
    """faust's own consumer and producer retry at our pace (on Kafka URLs; others untouched)."""
    if app.conf.broker_consumer[0].scheme in ("kafka", "aiokafka"):
        app.transport = BackoffTransport(app.conf.broker_consumer, app)
    if app.conf.broker_producer[0].scheme in ("kafka", "aiokafka"):
        app.producer_transport = BackoffTransport(app.conf.broker_producer, app)
