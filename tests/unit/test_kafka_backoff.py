"""Every Kafka client of the worker retries at RETRY_BACKOFF_MS, faust's included, and a failed
metadata refresh waits it out instead of spinning."""

from __future__ import annotations

import io
import time
import tokenize
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient

from streams.app import create_app
from streams.kafka_backoff import RETRY_BACKOFF_MS, install_metadata_backoff, with_backoff

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}



def _backoffs(obj: object, ms: int) -> dict[str, object]:
    return {k: v for k, v in vars(obj).items()
            if type(v) in (int, float) and v in (ms, ms / 1000)}


async def test_with_backoff_sets_what_the_constructor_argument_sets() -> None:
    built = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", retry_backoff_ms=1234)
    adjusted = with_backoff(AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1"), 1234)
    try:
        assert _backoffs(adjusted, 1234) == _backoffs(built, 1234) != {}
        assert _backoffs(adjusted._client, 1234) == _backoffs(built._client, 1234) != {}
    finally:
        await built.stop()
        await adjusted.stop()


async def test_a_metadata_refresh_that_reaches_no_broker_waits_the_backoff() -> None:
    install_metadata_backoff()
    install_metadata_backoff()  # idempotent: one wait, not two
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1", retry_backoff_ms=1000)
    started = time.monotonic()
    assert await client._metadata_update(client.cluster, set()) is False
    # one wait of 1 s; two would be 2 s (the margin absorbs a loaded machine)
    assert 1.0 <= time.monotonic() - started < 1.9


async def test_fausts_consumer_and_producer_retry_at_our_pace(tmp_path: Path) -> None:
    app = create_app("backoff-test", "kafka://127.0.0.1:1", tmp_path)
    producer: Any = app.producer
    assert producer._settings_default()["retry_backoff_ms"] == RETRY_BACKOFF_MS
    thread = cast(Any, app.consumer)._thread
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._retry_backoff_ms == RETRY_BACKOFF_MS
        assert consumer._client._retry_backoff == RETRY_BACKOFF_MS / 1000
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # the never-started consumer thread's own event loop


def _client_calls() -> dict[str, list[str | None]]:
    """``{path: [what is passed as retry_backoff_ms, or None, per client constructor call]}``.

    Tokens, not ``ast``: CPython 3.11.7's ast module can fail with "recursion depth mismatch"
    once faust has compiled code in the same process."""
    found: dict[str, list[str | None]] = {}
    for package in ("agents", "streams", "projections", "app"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
            for i, token in enumerate(tokens[:-1]):
                if token.string in CLIENTS and tokens[i + 1].string == "(":
                    found.setdefault(str(path.relative_to(ROOT)), []).append(
                        _keyword(tokens[i + 1:], "retry_backoff_ms"))
    return found


def _keyword(call: list[tokenize.TokenInfo], name: str) -> str | None:
    """The literal passed as ``name=`` in the call whose "(" starts ``call``."""
    depth = 0
    for i, token in enumerate(call):
        depth += {"(": 1, ")": -1}.get(token.string, 0)
        if depth == 0:
            return None
        if depth == 1 and token.string == name and call[i + 1].string == "=":
            return call[i + 2].string
    return None


def test_every_client_we_construct_passes_the_same_retry_backoff() -> None:
    calls = _client_calls()
    assert {p: values for p, values in calls.items() if set(values) != {"RETRY_BACKOFF_MS"}} == {}
    assert "app/pipeline.py" in calls and "streams/runtime.py" in calls
