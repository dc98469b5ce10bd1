"""BrokerOutages: the records of a broker outage become three kinds of line, in order, on a fake
clock; everything else passes untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import aiokafka.client as aiokafka_client
import pytest
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
)

import projections.otel.metrics  # noqa: F401  (its logger exists, as in the CLI)
from streams import outages
from streams.outages import STILL_DOWN_EVERY_S, BrokerOutages

pytestmark = pytest.mark.unit

REFUSED = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9092)")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """The lines the filter itself logs."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    report = logging.getLogger("tests.outages.report")
    report.addHandler(handler)
    report.setLevel(logging.INFO)
    yield handler
    report.removeHandler(handler)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def watch(clock: FakeClock, lines: Lines) -> BrokerOutages:
    return BrokerOutages(clock, logging.getLogger("tests.outages.report"))


def record(name: str, msg: str, *args: object, level: int = logging.ERROR,
           exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def refused() -> logging.LogRecord:
    return record("aiokafka", "Unable connect to node with id %s: %s", 1, REFUSED)


def not_ready() -> logging.LogRecord:
    return record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1,
                  NodeNotReadyError("Attempt to send a request to node which is not ready "
                                    "(node id 1)."))


def test_the_first_failure_becomes_one_warning_and_the_rest_are_swallowed(
        watch: BrokerOutages, clock: FakeClock, lines: Lines) -> None:
    assert watch.filter(refused()) is False
    for _ in range(500):
        clock.now += 0.1
        assert watch.filter(not_ready()) is False
        assert watch.filter(record("aiokafka", "Unable to update metadata from %s", [1])) is False
    assert watch.down
    assert lines.lines == [
        "WARNING broker 127.0.0.1:9092 unreachable (ConnectionRefusedError: [Errno 111] Connect "
        "call failed ('127.0.0.1', 9092)); retrying with backoff"]


def test_while_down_one_still_unreachable_line_per_interval(
        watch: BrokerOutages, clock: FakeClock, lines: Lines) -> None:
    watch.filter(refused())
    for _ in range(3 * 60):  # 15 minutes, a failure every 5 s
        clock.now += 5
        watch.filter(not_ready())
    assert lines.lines[1:] == [
        "WARNING broker 127.0.0.1:9092 still unreachable for 300 s (60 messages suppressed); "
        "retrying with backoff",
        "WARNING broker 127.0.0.1:9092 still unreachable for 600 s (120 messages suppressed); "
        "retrying with backoff",
        "WARNING broker 127.0.0.1:9092 still unreachable for 900 s (180 messages suppressed); "
        "retrying with backoff"]
    assert STILL_DOWN_EVERY_S == 300


def test_a_new_connection_ends_the_outage_with_one_line_and_the_next_failure_starts_another(
        watch: BrokerOutages, clock: FakeClock, lines: Lines) -> None:
    watch.connected("127.0.0.1:9092")  # up already: nothing to say
    watch.filter(refused())
    clock.now += 42
    watch.filter(not_ready())
    watch.connected("127.0.0.1:9092")
    watch.connected("127.0.0.1:9092")
    assert not watch.down
    clock.now += 60
    assert watch.filter(refused()) is False
    assert lines.lines[1:] == [
        "WARNING broker 127.0.0.1:9092 is back after 42 s (1 messages suppressed)",
        "WARNING broker 127.0.0.1:9092 unreachable (ConnectionRefusedError: [Errno 111] Connect "
        "call failed ('127.0.0.1', 9092)); retrying with backoff"]


def test_while_down_aiokafka_chatter_is_the_outages_but_its_tracebacks_are_not(
        watch: BrokerOutages) -> None:
    heartbeat = record("aiokafka.consumer.group_coordinator",
                       "Marking the coordinator dead (node %s)for group %s.", 1, "g",
                       level=logging.WARNING)
    crash = record("aiokafka.consumer.fetcher", "Unexpected error in fetcher routine",
                   exc=ValueError("bug"))
    info = record("aiokafka.consumer.group_coordinator", "Discovered coordinator %s", 1,
                  level=logging.INFO)
    assert watch.filter(heartbeat) is True  # up: not a connection failure, shown
    watch.filter(refused())
    assert watch.filter(heartbeat) is False
    assert watch.filter(crash) is True
    assert watch.filter(info) is True


def test_our_own_records_count_only_when_they_carry_a_kafka_error(
        watch: BrokerOutages, lines: Lines) -> None:
    timeout = record("streams.producers.base", "%s failed, retrying with backoff: %s",
                     "publish", "KafkaTimeoutError", level=logging.WARNING,
                     exc=KafkaTimeoutError())
    postgres = record("projections.otel.metrics", "metrics lag read failed: %s",
                      ConnectionResetError("postgres went away"), level=logging.WARNING)
    lag = record("projections.otel.metrics", "metrics lag read failed, keeping the last lags: "
                 "%s", KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]"),
                 level=logging.WARNING)
    assert watch.filter(timeout) is True  # a slow broker is not an unreachable one
    assert watch.filter(postgres) is True
    assert watch.filter(lag) is False  # the outage starts here
    assert watch.filter(timeout) is False  # and is the outage's while it lasts
    assert watch.filter(postgres) is True
    assert watch.filter(record("streams.producers.base", "cannot watch root=%s", "/x",
                               level=logging.WARNING)) is True
    assert lines.lines == [
        "WARNING broker 127.0.0.1:9092 unreachable (KafkaConnectionError: Unable to bootstrap "
        "from [('127.0.0.1', 9092)]); retrying with backoff"]


@pytest.mark.parametrize(("failure", "address"), [
    (record("aiokafka", 'Unable connect to "%s:%s": %s', "kafka.local", 9094, REFUSED),
     "kafka.local:9094"),
    (record("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s", 1,
            KafkaConnectionError("Connection at broker-1:9092 closed")), "broker-1:9092"),
    (record("aiokafka", "Unable connect to node with id %s: %s", 2, TimeoutError()), "node 2"),
    (record("aiokafka", "Unable to update metadata from %s", [1]), "?"),
])
def test_the_first_line_names_the_broker_the_failure_names(
        watch: BrokerOutages, lines: Lines, failure: logging.LogRecord, address: str) -> None:
    watch.filter(failure)
    assert lines.lines[0].startswith(f"WARNING broker {address} unreachable (")


def test_a_failure_that_names_no_broker_is_named_by_the_connection_that_ends_it(
        watch: BrokerOutages, lines: Lines) -> None:
    watch.filter(record("aiokafka", "Unable to update metadata from %s", [1]))
    watch.connected("kafka.local:9092")
    assert lines.lines[1].startswith("WARNING broker kafka.local:9092 is back after 0 s")


async def _fake_create_conn(host: str, port: int, **kwargs: object) -> str:
    if port == 1:
        raise ConnectionRefusedError(111, f"Connect call failed ('{host}', {port})")
    return f"connection to {host}:{port}"


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokerOutages]:
    """:func:`outages.install` in this process over a fake aiokafka connection factory, undone
    afterwards (loggers, create_conn)."""
    monkeypatch.setattr(aiokafka_client, "create_conn", _fake_create_conn)
    monkeypatch.setattr(outages, "_installed", None)
    watch = outages.install()
    yield watch
    for existing in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger):
            existing.removeFilter(watch)


def test_install_puts_one_filter_on_every_aiokafka_logger_and_observes_connections(
        installed: BrokerOutages) -> None:
    assert outages.install() is installed
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.consumer.fetcher",
                 "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender",
                 "aiokafka.admin.client", "projections.otel.metrics"):
        assert logging.getLogger(name).filters.count(installed) == 1, name
    logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch messages from %s: %s",
                                                         1, REFUSED)
    assert installed.down


async def test_installed_a_failed_connect_changes_nothing_and_a_completed_one_ends_the_outage(
        installed: BrokerOutages) -> None:
    installed.filter(refused())
    with pytest.raises(ConnectionRefusedError):
        await aiokafka_client.create_conn("127.0.0.1", 1)
    assert installed.down
    assert await aiokafka_client.create_conn("127.0.0.1", 9092) == "connection to 127.0.0.1:9092"
    assert not installed.down


def test_a_coordinator_still_starting_is_not_an_error_on_the_terminal(
        watch: BrokerOutages, lines: Lines) -> None:
    starting = record("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s",
                      GroupCoordinatorNotAvailableError())
    assert watch.filter(starting) is False
    assert not watch.down and lines.lines == []
    other = record("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s",
                   KafkaTimeoutError())
    assert watch.filter(other) is True  # any other failure is still shown (or is an outage's)
