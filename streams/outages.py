"""Broker outages in the log: three kinds of line per outage instead of several per retry.

This module owns what a sessionstream process says about the reachability of its Kafka
cluster. While a broker is away, aiokafka logs every failed attempt of every client (connect,
metadata, fetch, coordinator, heartbeat, produce), and our own code logs the errors it gets.
:class:`BrokerOutages`, one logging filter attached to all those loggers, collapses them into:

* ``broker <addr> unreachable (<reason>); retrying with backoff`` at the first failure;
* ``broker <addr> still unreachable for N s (M messages suppressed)`` at most once every
  :data:`STILL_DOWN_EVERY_S` while failures go on;
* ``broker <addr> is back after N s (M messages suppressed)`` at the first new connection that
  succeeds.

"Back" is a positive signal, not a guess from silence: aiokafka logs successful connections
only at DEBUG, on its per-request path, so :func:`install` wraps aiokafka's connection factory
(``aiokafka.client.create_conn``, through which every client connects, bootstrap included)
and reports each connection that completed its API-version handshake. A quiet spell proves
nothing (an idle producer tries nothing), and a filter cannot act on the absence of records.

One state per process: every client of a sessionstream process talks to one cluster, so any
new connection means the cluster answers again. While down, every warning or error of
aiokafka is the outage's (reconnects, metadata, coordinator, heartbeats, produce retries),
except tracebacks of unexpected errors; records of other loggers are the outage's only if they
carry a Kafka error. One more record is not an outage and is dropped: aiokafka's
"Group Coordinator Request failed" with ``GroupCoordinatorNotAvailableError``, which a
reachable broker answers while its offsets topic is still being created (a first start); the
client retries it with backoff, so it is not an error a user can act on. Everything else passes
untouched.
"""

from __future__ import annotations

import functools
import logging
import pkgutil
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiokafka
import aiokafka.client as aiokafka_client
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
)

__all__ = ["STILL_DOWN_EVERY_S", "BrokerOutages", "install"]

logger = logging.getLogger(__name__)

STILL_DOWN_EVERY_S = 300.0
"""At most one "still unreachable" line per this many seconds of one outage."""

WATCHED = ("aiokafka", "agents", "streams", "projections", "faust", "mode")
"""Logger namespaces the filter is attached to (every existing logger under them)."""

_UNREACHABLE = (KafkaConnectionError, NodeNotReadyError)
_AIOKAFKA_UNREACHABLE = (*_UNREACHABLE, OSError, TimeoutError)
_AIOKAFKA_FORMATS = ("Unable connect to", "Unable to update metadata from",
                     "Unable to request metadata from", "Unable to bootstrap")
_ADDRESS = (re.compile(r"\"([^\"\s]+):(\d+)\""),  # Unable connect to "host:9092"
            re.compile(r"\bat ([^\s:]+):(\d+)"),  # Connection at host:9092 closed
            re.compile(r"\('([^']+)', (\d+)"))  # Connect call failed ('127.0.0.1', 9092)
_NODE = re.compile(r"node (?:with )?id (\w+)")


@dataclass
class _Outage:
    address: str
    since: float
    reported: float
    suppressed: int = 0


class BrokerOutages(logging.Filter):
    """The filter's state machine: up -> down (one line), down (a line every
    ``still_every`` s), down -> up on :meth:`connected` (one line). Thread-safe: faust's
    consumer runs its own event loop in another thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 report: logging.Logger = logger,
                 still_every: float = STILL_DOWN_EVERY_S) -> None:
        super().__init__()
        self.clock, self.report, self.still_every = clock, report, still_every
        self._outage: _Outage | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._outage is not None

    def filter(self, record: logging.LogRecord) -> bool:
        """False (swallowed) for a record of the outage, True for any other record."""
        if _coordinator_starting(record):
            return False
        if record.name == self.report.name or not self._of_outage(record):
            return True
        with self._lock:
            line = self._failed(record)
        if line is not None:
            self.report.warning(*line)
        return False

    def connected(self, address: str) -> None:
        """A connection to ``address`` succeeded: ends the outage, if any, with one line
        (naming the broker the outage named, or ``address`` when it named none)."""
        if self._outage is None:
            return
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None:
            self.report.warning("broker %s is back after %.0f s (%d messages suppressed)",
                                address if outage.address == "?" else outage.address,
                                self.clock() - outage.since, outage.suppressed)

    def _of_outage(self, record: logging.LogRecord) -> bool:
        if _is_aiokafka(record):
            return (record.levelno >= logging.WARNING and _unexpected(record) is None and
                    (self._outage is not None or _aiokafka_unreachable(record)))
        errors = _UNREACHABLE if self._outage is None else (KafkaError,)
        return any(isinstance(e, errors) for e in _exceptions(record))

    def _failed(self, record: logging.LogRecord) -> tuple[Any, ...] | None:
        """Count ``record`` into the outage; the line to log, if one is due."""
        now = self.clock()
        outage = self._outage
        if outage is None:
            self._outage = _Outage(_address(record), since=now, reported=now)
            return ("broker %s unreachable (%s); retrying with backoff",
                    self._outage.address, _reason(record))
        outage.suppressed += 1
        if now - outage.reported < self.still_every:
            return None
        outage.reported = now
        return ("broker %s still unreachable for %.0f s (%d messages suppressed); "
                "retrying with backoff", outage.address, now - outage.since, outage.suppressed)


def _coordinator_starting(record: logging.LogRecord) -> bool:
    """A retried lookup answered "coordinator not available" (a broker still starting)."""
    return (_is_aiokafka(record) and isinstance(record.msg, str)
            and record.msg.startswith("Group Coordinator Request failed")
            and any(isinstance(a, GroupCoordinatorNotAvailableError) for a in record.args or ()))


def _is_aiokafka(record: logging.LogRecord) -> bool:
    return record.name == "aiokafka" or record.name.startswith("aiokafka.")


def _exceptions(record: logging.LogRecord) -> Iterator[BaseException]:
    if isinstance(record.args, tuple):
        yield from (a for a in record.args if isinstance(a, BaseException))
    if record.exc_info and record.exc_info[1] is not None:
        yield record.exc_info[1]


def _unexpected(record: logging.LogRecord) -> BaseException | None:
    """The traceback's exception when it is not about reaching the broker (a bug: shown)."""
    exc = record.exc_info[1] if record.exc_info else None
    return None if exc is None or isinstance(exc, (KafkaError, *_AIOKAFKA_UNREACHABLE)) else exc


def _aiokafka_unreachable(record: logging.LogRecord) -> bool:
    return (isinstance(record.msg, str) and record.msg.startswith(_AIOKAFKA_FORMATS)) or any(
        isinstance(e, _AIOKAFKA_UNREACHABLE) for e in _exceptions(record))


def _address(record: logging.LogRecord) -> str:
    """The broker a failure names: ``host:port`` if it says, else ``node N``, else ``?``."""
    text = record.getMessage()
    for pattern in _ADDRESS:
        found = pattern.search(text)
        if found:
            return f"{found.group(1)}:{found.group(2)}"
    node = _NODE.search(text)
    return f"node {node.group(1)}" if node else "?"


def _reason(record: logging.LogRecord) -> str:
    """The failure's exception as ``Type: text`` (aiokafka's own already read so), else its
    message."""
    for exc in _exceptions(record):
        name, text = type(exc).__name__, str(exc)
        return text if text.startswith(name) or name in text else f"{name}: {text}".rstrip(": ")
    return record.getMessage()


_installed: BrokerOutages | None = None
_install_lock = threading.Lock()


def install() -> BrokerOutages:
    """Attach the one :class:`BrokerOutages` to every watched logger and observe aiokafka's
    connections; safe to call again (it also reaches loggers created since)."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = BrokerOutages()
            _observe_connections()
        for name in _watched_loggers():
            target = logging.getLogger(name)
            if _installed not in target.filters:
                target.addFilter(_installed)
        return _installed


def _watched_loggers() -> Iterator[str]:
    """aiokafka's module loggers (created now if need be) and every existing watched logger."""
    yield "aiokafka"
    for module in pkgutil.walk_packages(aiokafka.__path__, "aiokafka."):
        yield module.name
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(existing, logging.Logger) and name.split(".")[0] in WATCHED:
            yield name


def _observe_connections() -> None:
    """Report every connection aiokafka completes to the installed filter."""
    create_conn = aiokafka_client.create_conn

    @functools.wraps(create_conn)
    async def observed(host: str, port: int, **kwargs: Any) -> Any:
        conn = await create_conn(host, port, **kwargs)
        if _installed is not None:
            _installed.connected(f"{host}:{port}")
        return conn

    aiokafka_client.create_conn = observed
