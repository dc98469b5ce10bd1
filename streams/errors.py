"""The exception tree of sessionstream; every error the code raises on purpose is here.

::

    * SessionStreamError
      x ConfigError                          bad or missing settings -> clear message, exit at start
      x StackError                           a local server would not start or stop
      x BrokerUnavailable                    the Kafka broker cannot be reached -> clear message
      x InvalidEvent                         payload fails its schema -> <topic>.dlq, continue
      x ProjectionError
        + ProjectionUnavailable(retry_after) transient -> back off, retry the same batch
        + ProjectionRejected                 permanent for this batch -> dead letter, continue
        + LogBehindStore                     a replay would reset a store from a log that holds
                                             less than the store applied -> refuse, say why
      x SourceError
        + SourceUnavailable(retry_after)     poller / circuit breaker territory
        + SourceRejected                     the source answered with an error (JSON-RPC error,
                                             tool isError, HTTP 4xx): not retried

Driver errors are translated into these once, at each store boundary, with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "InvalidEvent",
    "LogBehindStore",
    "ProjectionError",
    "ProjectionRejected",
    "ProjectionUnavailable",
    "SessionStreamError",
    "SourceError",
    "SourceRejected",
    "SourceUnavailable",
    "StackError",
]


class SessionStreamError(Exception):
    """Base of every error sessionstream raises on purpose."""


class ConfigError(SessionStreamError):
    """A setting is missing or wrong; the message names the variable."""


class StackError(SessionStreamError):
    """A server of the local stack failed to start, become ready, or stop."""


class BrokerUnavailable(SessionStreamError):
    """The Kafka broker cannot be reached; the message names it and what to check."""


class InvalidEvent(SessionStreamError):
    """An event does not match its topic's schema; it goes to the dead-letter topic."""


class ProjectionError(SessionStreamError):
    """A projection could not apply a batch."""


class ProjectionUnavailable(ProjectionError):
    """The store is temporarily unreachable; retry the same batch after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProjectionRejected(ProjectionError):
    """The store refused the batch for good; its events go to the dead-letter topic."""


class LogBehindStore(ProjectionError):
    """The topic holds fewer records than the store applied from it (the broker lost its log,
    or the store was fed by another broker): rebuilding from it would lose rows."""


class SourceError(SessionStreamError):
    """A producer's source could not be read."""


class SourceUnavailable(SourceError):
    """A polled source is down; try again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SourceRejected(SourceError):
    """A polled source is up but refused the request (a JSON-RPC error, a tool's ``isError``
    result, an HTTP 4xx); retrying the same request now would not help."""
