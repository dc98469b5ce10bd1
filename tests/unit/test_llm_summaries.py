"""The LLM summarizer without a network: the wire formats and error classes of both APIs
(``httpx.MockTransport``), the retry schedule, what is summarized, the breaker and its metrics,
the additive schema field and the settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agents.llm.client import LlmClient
from agents.llm.errors import LlmRejected, LlmUnavailable, classify, retry_after_of
from agents.llm.metrics import LlmMetrics
from agents.llm.policy import RetrySchedule, SummaryMemory, with_llm
from agents.llm.prompts import Prompts
from agents.llm.service import LlmSummarizer
from agents.llm.summaries import LlmSummaries
from schemas.summaries import SessionSummaryEvent
from streams.breaker import BreakerState, CircuitBreaker
from streams.codecs import decode, encode
from streams.errors import ConfigError
from streams.settings import load_settings
from streams.topics import SUMMARIES
from tests.llm_samples import active_summary, closed_summary

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def _answer(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# -- the schema: additive ------------------------------------------------------------------------

def test_a_deterministic_summary_is_encoded_without_the_llm_field() -> None:
    summary = closed_summary()
    assert b'"llm"' not in encode(summary)
    record = with_llm(summary, "It fixed the parser.", "m-1", "openai", NOW)
    back: SessionSummaryEvent = decode(SUMMARIES.value, encode(record))
    assert back.payload.llm is not None and back.payload.llm.text == "It fixed the parser."
    assert back.payload.llm.summary_event_id == summary.event_id
    assert back.payload.model_copy(update={"llm": None}) == summary.payload  # the same facts
    assert back.event_id != summary.event_id and back.type == "session.summary.llm"


# -- error classes of both APIs ----------------------------------------------------------------

CASES = [  # (status, body, headers) -> (class, kind, retry_after)
    (401, {"error": {"type": "invalid_request_error", "code": "invalid_api_key",
                     "message": "Incorrect API key"}}, {}, LlmRejected, "auth", 0.0),
    (401, {"type": "error", "error": {"type": "authentication_error",
                                      "message": "invalid x-api-key"}}, {}, LlmRejected, "auth", 0),
    (403, {"type": "error", "error": {"type": "permission_error", "message": "no"}}, {},
     LlmRejected, "auth", 0.0),
    (429, {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}},
     {"retry-after": "7"}, LlmUnavailable, "rate_limit", 7.0),
    (429, {"error": {"type": "insufficient_quota", "code": "insufficient_quota",
                     "message": "You exceeded your current quota"}}, {}, LlmUnavailable, "quota",
     0.0),
    (400, {"type": "error", "error": {"type": "invalid_request_error",
                                      "message": "Your credit balance is too low"}}, {},
     LlmUnavailable, "quota", 0.0),
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
     {"retry-after-ms": "1500"}, LlmUnavailable, "rate_limit", 1.5),
    (400, {"error": {"type": "invalid_request_error", "code": None,
                     "message": "max_tokens is too large"}}, {}, LlmRejected, "bad_request", 0.0),
    (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}, {},
     LlmRejected, "bad_request", 0.0),
    (500, {"type": "error", "error": {"type": "api_error", "message": "oops"}}, {},
     LlmUnavailable, "server", 0.0),
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
     {"retry-after": "3"}, LlmUnavailable, "server", 3.0),
    (503, "upstream connect error", {}, LlmUnavailable, "server", 0.0),
    (408, {}, {}, LlmUnavailable, "timeout", 0.0),
]


@pytest.mark.parametrize(("status", "body", "headers", "cls", "kind", "wait"), CASES)
def test_http_answers_of_both_apis_are_classified(status: int, body: object,
                                                  headers: dict[str, str], cls: type,
                                                  kind: str, wait: float) -> None:
    error = classify(_answer(status, body, **headers), "http://llm")
    assert (type(error), error.kind) == (cls, kind)
    assert getattr(error, "retry_after", 0.0) == pytest.approx(wait)
    assert f"HTTP {status}" in str(error)


def test_retry_after_as_an_http_date() -> None:
    response = _answer(429, {}, **{"retry-after": "Mon, 02 Mar 2026 12:00:30 GMT"})
    assert retry_after_of(response, now=NOW.timestamp()) == pytest.approx(30.0)


# -- the client's wire formats -----------------------------------------------------------------

async def test_each_provider_sends_its_own_request_and_reads_its_own_answer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/chat/completions"):
            return _answer(200, {"model": "gpt-x-1", "choices": [{"message": {
                "role": "assistant", "content": " It fixed it. "}}]})
        return _answer(200, {"model": "claude-y", "content": [
            {"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "It fixed it."}]})

    transport = httpx.MockTransport(handler)
    async with LlmClient("openai", "gpt-x", url="http://llm/v1", api_key="k1",
                         transport=transport) as openai:
        reply = await openai.complete("sys", "usr")
        assert (reply.text, reply.model) == ("It fixed it.", "gpt-x-1")
    async with LlmClient("anthropic", "claude-y", url="http://llm", api_key="k2",
                         max_tokens=99, transport=transport) as anthropic:
        reply = await anthropic.complete("sys", "usr")
        assert (reply.text, reply.model) == ("It fixed it.", "claude-y")
    first, second = seen
    assert (first.url.path, first.headers["authorization"]) == ("/v1/chat/completions",
                                                                "Bearer k1")
    assert json.loads(first.content)["messages"] == [{"role": "system", "content": "sys"},
                                                     {"role": "user", "content": "usr"}]
    assert (second.url.path, second.headers["x-api-key"]) == ("/v1/messages", "k2")
    assert second.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(second.content)
    assert (body["system"], body["max_tokens"], body["messages"]) == (
        "sys", 99, [{"role": "user", "content": "usr"}])


async def test_a_transport_failure_is_network_and_an_empty_answer_is_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with LlmClient("openai", "m", url="http://llm/v1",
                         transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(LlmUnavailable) as caught:
            await client.complete("s", "u")
    assert caught.value.kind == "network"
    empty = httpx.MockTransport(lambda r: _answer(200, {"content": []}))
    async with LlmClient("anthropic", "m", url="http://llm", transport=empty) as client:
        with pytest.raises(LlmUnavailable) as caught:
            await client.complete("s", "u")
    assert caught.value.kind == "server"


# -- what is summarized, and when it is tried again -----------------------------------------------

def test_the_retry_schedule_waits_5m_15m_45m_2h_6h_then_gives_up() -> None:
    schedule = RetrySchedule()
    waits = [(schedule.due(n, NOW) - NOW).total_seconds() for n in range(1, 6)]  # type: ignore
    assert waits == [300, 900, 2700, 7200, 21600]
    assert schedule.due(6, NOW) is None
    assert schedule.due(1, NOW, retry_after=600) == NOW + timedelta(seconds=600)


def test_memory_wants_closed_sessions_once_and_long_ones_rate_limited() -> None:
    memory = SummaryMemory(update_interval=1800)
    closed = closed_summary()
    assert memory.wants(closed, NOW)
    memory.remember(with_llm(closed, "t", "m", "openai", NOW))
    assert not memory.wants(closed, NOW)  # re-emitted after a restart: the same event_id
    assert not memory.wants(with_llm(closed_summary("s2"), "t", "m", "openai", NOW), NOW)
    assert not memory.wants(active_summary("s3", minutes=10), NOW)  # short and active
    long = active_summary("s4", minutes=60)
    assert memory.wants(long, NOW)
    memory.remember(with_llm(long, "t", "m", "openai", NOW))
    later = active_summary("s4", minutes=61)
    assert not memory.wants(later, NOW + timedelta(minutes=10))
    assert memory.wants(later, NOW + timedelta(minutes=31))
    assert not SummaryMemory(update_interval=0).wants(long, NOW)  # 0: closed only


# -- the service: breaker, outcomes, metrics ---------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _service(handler: Handler, clock: Clock, **schedule: object
             ) -> tuple[LlmSummarizer, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    client = LlmClient("openai", "m", url="http://llm/v1", transport=httpx.MockTransport(handler))
    metrics = LlmMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"), client.endpoint)
    service = LlmSummarizer(client, Prompts.load(), metrics,
                            schedule=RetrySchedule(**schedule),  # type: ignore[arg-type]
                            breaker=CircuitBreaker(3, 30.0, clock=clock, name="llm"),
                            clock=lambda: NOW)
    return service, reader


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset], float]:
    data = reader.get_metrics_data()
    return {(m.name, frozenset(p.attributes.items())): p.value
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            for p in m.data.data_points}


async def test_the_breaker_opens_after_three_failures_and_a_half_open_probe_closes_it() -> None:
    answers = [503, 503, 503, 200]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = answers[len(calls)]
        calls.append(status)
        return _answer(status, {"model": "m", "choices": [{"message": {"content": "ok"}}]}
                       if status == 200 else {"error": {"message": "down"}})

    clock = Clock()
    service, reader = _service(handler, clock)
    await service.client.open()
    summary = closed_summary()
    for _ in range(3):
        outcome = await service.attempt(summary)
        assert outcome.retry is not None and outcome.retry.error_type == "server"
    assert service.breaker.state is BreakerState.OPEN
    refused = await service.attempt(summary)  # no call while open
    assert refused.retry is not None and refused.retry.error_type == "circuit_open"
    assert refused.retry.attempt == 0 and refused.retry.due_at == NOW + timedelta(seconds=30)
    assert len(calls) == 3
    endpoint = ("sessionstream.llm.endpoint", "http://llm/v1/chat/completions")
    points = _points(reader)
    assert points[("sessionstream.llm.breaker.state", frozenset({endpoint}))] == 2
    assert points[("sessionstream.llm.failures",
                   frozenset({endpoint, ("error.type", "server")}))] == 3
    clock.now = 30.0  # half-open: the probe goes out and succeeds
    done = await service.attempt(summary)
    assert done.summary is not None and done.summary.payload.llm is not None
    assert service.breaker.state is BreakerState.CLOSED
    points = _points(reader)
    assert points[("sessionstream.llm.breaker.state", frozenset({endpoint}))] == 0
    assert points[("sessionstream.llm.summaries",
                   frozenset({endpoint, ("session.status", "closed")}))] == 1
    assert points[("sessionstream.llm.breaker.transitions",
                   frozenset({endpoint, ("from", "half_open"), ("to", "closed")}))] == 1
    await service.client.close()


async def test_auth_errors_are_dead_at_once_and_the_last_retry_gives_up() -> None:
    status = {"now": 401}

    def handler(request: httpx.Request) -> httpx.Response:
        return _answer(status["now"], {"error": {"code": "invalid_api_key", "message": "no"}})

    service, reader = _service(handler, Clock(), delays=[1.0, 2.0])
    await service.client.open()
    dead = await service.attempt(closed_summary())
    assert dead.dead is not None and str(dead.dead).startswith("[auth]")
    status["now"] = 500
    retry = await service.attempt(closed_summary(), failed_tries=1)
    assert retry.retry is not None and retry.retry.attempt == 2
    assert retry.retry.due_at == NOW + timedelta(seconds=2)
    last = await service.attempt(closed_summary(), failed_tries=2)
    assert last.dead is not None and "gave up after 3 tries" in str(last.dead)
    await service.client.close()


async def test_retry_after_counts_from_the_answer_not_from_the_request() -> None:
    times = iter([NOW, NOW + timedelta(seconds=3)])  # the 429 came 3 s after the request

    def handler(request: httpx.Request) -> httpx.Response:
        return _answer(429, {"error": {"message": "slow"}}, **{"Retry-After": "10"})

    service, _ = _service(handler, Clock(), delays=[1.0])
    service.clock = lambda: next(times)
    await service.client.open()
    outcome = await service.attempt(closed_summary())
    assert outcome.retry is not None and outcome.retry.error_type == "rate_limit"
    assert outcome.retry.due_at == NOW + timedelta(seconds=13)
    await service.client.close()


# -- prompts and settings ------------------------------------------------------------------------

def test_prompts_fill_the_summary_and_come_from_files(tmp_path: Path) -> None:
    system, user = Prompts.load().render(closed_summary().payload)
    assert "Fix the parser" in user and "fix the parser please" in user and system
    (tmp_path / "u.txt").write_text("T=$title cost $$1 $unknown")
    (tmp_path / "s.txt").write_text("be brief\n")
    system, user = Prompts.load(tmp_path / "s.txt", tmp_path / "u.txt").render(
        closed_summary().payload)
    assert (system, user) == ("be brief", "T=Fix the parser cost $1 $unknown")


def test_off_by_default_and_config_errors_name_the_variables() -> None:
    settings = load_settings(_env_file=None)
    assert settings.llm_provider is None
    meter = MeterProvider().get_meter("t")
    assert LlmSummaries.from_settings(settings, "127.0.0.1:1", meter) is None
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, llm_provider="anthropic")
    assert "SESSIONSTREAM_LLM_MODEL" in str(caught.value)
    assert "SESSIONSTREAM_LLM_API_KEY" in str(caught.value)
    with pytest.raises(ConfigError, match="SESSIONSTREAM_LLM_PROVIDER"):
        load_settings(_env_file=None, llm_provider="gemini", llm_model="m")
    local = load_settings(_env_file=None, llm_provider="openai", llm_model="llama3",
                          llm_url="http://127.0.0.1:11434/v1", llm_retry_delays_s="1,2")
    built = LlmSummaries.from_settings(local, "127.0.0.1:1", meter)
    assert built is not None and built.endpoint == "http://127.0.0.1:11434/v1/chat/completions"
    assert built.llm.schedule.delays == [1.0, 2.0]
