"""What can go wrong with an LLM call, and how each API's HTTP answers map to it.

::

    * SessionStreamError
      x LlmError(kind)                         one failed call; ``kind`` is its class
        + LlmUnavailable(kind, retry_after)    transient: rate_limit, quota, network, timeout,
                                               server -> retry topic, with backoff
        + LlmRejected(kind)                    permanent: auth, bad_request -> dead letter

:func:`classify` reads a non-2xx answer of either API once, here: 401/403 are ``auth``; 429 is
``rate_limit``, or ``quota`` when the body says the account is out of credit (OpenAI's
``insufficient_quota``, Anthropic's "credit balance is too low", which Anthropic sends as a
400); 408 is ``timeout``; 409, 5xx and Anthropic's 529 ``overloaded_error`` are ``server``;
any other 4xx is ``bad_request``. ``Retry-After`` (seconds or an HTTP date) and OpenAI's
``retry-after-ms`` become ``retry_after``. :attr:`LlmError.trips_breaker` says whether the
failure counts against the endpoint's circuit breaker: every class but ``bad_request`` (the
endpoint answered; the request was wrong).
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Literal

import httpx

from streams.errors import SessionStreamError

__all__ = ["ErrorKind", "LlmError", "LlmRejected", "LlmUnavailable", "classify", "retry_after_of"]

ErrorKind = Literal["auth", "rate_limit", "quota", "network", "timeout", "server", "bad_request"]

_QUOTA_MARKERS = ("insufficient_quota", "credit balance", "exceeded your current quota")


class LlmError(SessionStreamError):
    """One LLM call failed; ``kind`` classifies why."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind

    @property
    def trips_breaker(self) -> bool:
        return self.kind != "bad_request"


class LlmUnavailable(LlmError):
    """Transient: the same call may succeed later, not before ``retry_after`` seconds."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float = 0.0) -> None:
        super().__init__(kind, message)
        self.retry_after = retry_after


class LlmRejected(LlmError):
    """Permanent: retrying the same call cannot help (a wrong key, a malformed request)."""


def classify(response: httpx.Response, where: str) -> LlmError:
    """The error a non-2xx ``response`` of either API stands for; ``where`` prefixes the
    message (the endpoint)."""
    status = response.status_code
    detail = _detail(response)
    message = f"{where}: HTTP {status}: {detail}"
    wait = retry_after_of(response)
    lowered = detail.lower()
    if status in (401, 403):
        return LlmRejected("auth", message)
    if status == 429 or (status in (400, 402) and any(m in lowered for m in _QUOTA_MARKERS)):
        quota = any(m in lowered for m in _QUOTA_MARKERS)
        return LlmUnavailable("quota" if quota else "rate_limit", message, wait)
    if status == 408:
        return LlmUnavailable("timeout", message, wait)
    if status == 409 or status >= 500:
        return LlmUnavailable("server", message, wait)
    return LlmRejected("bad_request", message)


def retry_after_of(response: httpx.Response, now: float | None = None) -> float:
    """Seconds the server asked to wait (``retry-after-ms``, ``Retry-After`` as seconds or an
    HTTP date); 0 when it did not say."""
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when - (time.time() if now is None else now))


def _detail(response: httpx.Response) -> str:
    """The error's own words: ``error.type``/``code`` and ``error.message`` of either API's
    JSON body, else the start of the body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        label = error.get("code") or error.get("type") or ""
        return f"{label}: {error.get('message') or ''}".strip(": ")[:500]
    return json.dumps(body)[:300]
