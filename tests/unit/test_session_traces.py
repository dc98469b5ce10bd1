"""Session traces without servers: the documented ids, the span tree built from rows, re-export
with the same ids, and the OTLP request (URL, headers, body) the exporter sends."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode
from requests.adapters import BaseAdapter

from app.cli import cli
from projections.otel.session_spans import (
    Prompt,
    Response,
    SessionInfo,
    ToolCall,
    build_spans,
    span_id_of,
    trace_id_hex,
    trace_id_of,
)
from projections.otel.session_traces import span_exporter, traces_url

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "traces.md"
SESSION = "7c0f4d7e-2b1a-4c8e-9f3d-5a6b7c8d9e0f"
SESSION_TRACE = "3fb1f9ef1fadb14cf33b24527f50a91f"
OPUS, HAIKU = "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def nanos(seconds: float) -> int:
    return (at(seconds) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


INFO = SessionInfo(id=SESSION, source="claude-code", started_at=at(0), last_activity_at=at(60),
                   ended_at=at(60), title="fix the build", project="app")
PROMPTS = [Prompt("user:p2", at(30)), Prompt("user:p1", at(1))]  # any order
RESPONSES = [
    Response("m1:r1", OPUS, at(5), input_tokens=10, output_tokens=100, cache_read_tokens=1000,
             cache_creation_tokens=200, cost_usd=0.25),
    Response("m2:r2", OPUS, at(12), input_tokens=3, output_tokens=50, cost_usd=0.125),
    Response("m3:r3", HAIKU, at(9), input_tokens=7, output_tokens=8, agent_id="a1"),
    Response("m4:r4", OPUS, at(40), input_tokens=1, output_tokens=2),
]
TOOLS = [ToolCall("t1", "Bash", at(6), at(8), is_error=False),
         ToolCall("t2", "Read", at(31), at(33), is_error=True)]


def spans_of(since: datetime | None = None, **changes: Any) -> list[ReadableSpan]:
    rows = {"prompts": PROMPTS, "responses": RESPONSES, "tools": TOOLS, **changes}
    return build_spans(INFO, rows["prompts"], rows["responses"], rows["tools"], since=since)


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """Spans keyed by their natural key (message key / tool id), the root as ``session``."""
    out = {}
    for span in spans:
        attributes = span.attributes or {}
        key = attributes.get("sessionstream.message_key") or attributes.get("gen_ai.tool.call.id")
        out[str(key or "session")] = span
    return out


def identity(span: ReadableSpan) -> tuple[Any, ...]:
    return (span.context.trace_id, span.context.span_id,
            span.parent.span_id if span.parent else None, span.name, span.start_time,
            span.end_time, dict(span.attributes or {}))


# -- ids ---------------------------------------------------------------------------------------

def test_the_trace_id_is_the_documented_hash_of_the_session_id() -> None:
    assert trace_id_hex(SESSION) == SESSION_TRACE
    assert trace_id_of(SESSION) == int(SESSION_TRACE, 16)
    assert trace_id_hex("another") != SESSION_TRACE
    result = CliRunner().invoke(cli, ["trace-id", SESSION, "another"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [SESSION_TRACE, trace_id_hex("another")]


def test_the_one_liner_in_the_docs_computes_the_same_id() -> None:
    text = DOCS.read_text()
    line = re.search(r"^(printf 'sessionstream:trace:%s' .*sha256sum.*)$", text, re.M)
    assert line is not None, "docs/traces.md shows no shell one-liner"
    out = subprocess.run(["bash", "-c", line.group(1)], env={"SESSION_ID": SESSION},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == SESSION_TRACE


def test_span_ids_come_from_the_trace_and_the_natural_key() -> None:
    trace = trace_id_of(SESSION)
    ids = {span_id_of(trace, kind, key) for kind in ("session", "turn", "response", "tool")
           for key in ("k1", "k2")}
    assert len(ids) == 8
    assert span_id_of(trace, "turn", "k1") == span_id_of(trace, "turn", "k1")
    assert span_id_of(trace_id_of("other"), "turn", "k1") != span_id_of(trace, "turn", "k1")


# -- the tree ----------------------------------------------------------------------------------

def test_turns_responses_and_tools_form_one_tree() -> None:
    spans = by_name(spans_of())
    assert sorted(spans) == ["m1:r1", "m2:r2", "m3:r3", "m4:r4", "session", "t1", "t2",
                             "user:p1", "user:p2"]
    trace = trace_id_of(SESSION)
    assert {s.context.trace_id for s in spans.values()} == {trace}
    root, p1, p2 = spans["session"], spans["user:p1"], spans["user:p2"]
    assert root.parent is None
    assert root.context.span_id == span_id_of(trace, "session", SESSION)
    assert p1.context.span_id == span_id_of(trace, "turn", "user:p1")
    assert spans["m1:r1"].context.span_id == span_id_of(trace, "response", "m1:r1")
    assert spans["t2"].context.span_id == span_id_of(trace, "tool", "t2")
    parents = {k: s.parent.span_id for k, s in spans.items() if s.parent is not None}
    assert parents == {"user:p1": root.context.span_id, "user:p2": root.context.span_id,
                       "m1:r1": p1.context.span_id, "m2:r2": p1.context.span_id,
                       "m3:r3": p1.context.span_id, "t1": p1.context.span_id,
                       "m4:r4": p2.context.span_id, "t2": p2.context.span_id}


def test_times_come_from_the_rows() -> None:
    spans = by_name(spans_of())
    times = {k: (s.start_time, s.end_time) for k, s in spans.items()}
    assert times["session"] == (nanos(0), nanos(60))
    assert times["user:p1"] == (nanos(1), nanos(12))  # its prompt to its last row
    assert times["user:p2"] == (nanos(30), nanos(40))
    assert times["m1:r1"] == (nanos(1), nanos(5))  # requested after the prompt
    assert times["m2:r2"] == (nanos(8), nanos(12))  # after the tool result before it
    assert times["m3:r3"] == (nanos(1), nanos(9))  # a sub-agent's own thread
    assert times["t1"] == (nanos(6), nanos(8))


def test_genai_attributes() -> None:
    spans = by_name(spans_of())
    for span in spans.values():
        assert span.attributes is not None
        assert span.attributes["gen_ai.conversation.id"] == SESSION
    response = spans["m1:r1"]
    assert response.name == f"chat {OPUS}"
    assert response.kind is SpanKind.CLIENT
    assert {k: v for k, v in (response.attributes or {}).items() if k.startswith("gen_ai.")} == {
        "gen_ai.conversation.id": SESSION, "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic", "gen_ai.request.model": OPUS,
        "gen_ai.response.model": OPUS, "gen_ai.usage.input_tokens": 1210,  # cache included
        "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_creation.input_tokens": 200}
    assert (spans["m3:r3"].attributes or {})["gen_ai.agent.id"] == "a1"
    turn = spans["user:p1"].attributes or {}
    assert spans["user:p1"].name == "invoke_agent claude-code"
    assert turn["gen_ai.operation.name"] == "invoke_agent"
    assert turn["gen_ai.usage.input_tokens"] == 1210 + 3 + 7
    assert turn["gen_ai.usage.output_tokens"] == 158
    assert turn["sessionstream.responses"] == 3
    assert turn["sessionstream.cost_usd"] == 0.375
    assert tuple(turn["sessionstream.tool.names"]) == ("Bash",)  # type: ignore[arg-type]
    root = spans["session"].attributes or {}
    assert root["gen_ai.operation.name"] == "invoke_agent"
    assert root["gen_ai.usage.output_tokens"] == 160
    assert root["sessionstream.session.title"] == "fix the build"
    tool = spans["t2"]
    assert tool.name == "execute_tool Read"
    assert (tool.attributes or {})["gen_ai.tool.name"] == "Read"
    assert (tool.attributes or {})["gen_ai.operation.name"] == "execute_tool"
    assert tool.status.status_code is StatusCode.ERROR
    assert spans["t1"].status.status_code is StatusCode.UNSET


def test_responses_before_the_first_prompt_hang_from_the_root() -> None:
    early = [Response("m0:r0", OPUS, at(0.25), input_tokens=1),
             Response("m0:r1", OPUS, at(0.5), input_tokens=1)]
    spans = by_name(spans_of(responses=[*early, *RESPONSES]))
    assert spans["m0:r0"].parent == spans["session"].context
    assert spans["m0:r1"].parent == spans["session"].context
    assert (spans["m0:r0"].start_time, spans["m0:r1"].start_time) == (nanos(0.25), nanos(0.25))


def test_a_session_without_rows_has_no_trace() -> None:
    assert spans_of(prompts=[], responses=[], tools=[]) == []


# -- re-export ---------------------------------------------------------------------------------

def test_building_again_gives_identical_spans() -> None:
    first = [identity(s) for s in spans_of()]
    again = [identity(s) for s in build_spans(INFO, list(reversed(PROMPTS)),
                                              list(reversed(RESPONSES)), list(reversed(TOOLS)))]
    assert first == again


def test_an_export_after_a_reopen_sends_only_the_new_rows_under_the_same_ids() -> None:
    all_ids = {k: s.context.span_id for k, s in by_name(spans_of()).items()}
    later = by_name(spans_of(since=at(20)))  # exported through 20 s, then reopened
    assert sorted(later) == ["m4:r4", "session", "t2", "user:p2"]
    assert {k: s.context.span_id for k, s in later.items()} == {k: all_ids[k] for k in later}
    assert spans_of(since=at(60)) == []


def test_a_row_after_the_watermark_resends_its_old_turn() -> None:
    late = Response("m5:r5", OPUS, at(25), input_tokens=1)  # after p1, before p2
    spans = by_name(spans_of(since=at(20), responses=[*RESPONSES, late]))
    assert spans["m5:r5"].parent == spans["user:p1"].context
    assert spans["user:p1"].end_time == nanos(25)


# -- the exporter ------------------------------------------------------------------------------

class Recorder(BaseAdapter):
    """A requests transport that keeps each request and answers 200."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        self.requests.append(request)
        response = requests.Response()
        response.status_code = 200
        response._content = b""
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_the_exporter_posts_to_v1_traces_with_the_configured_headers() -> None:
    recorder = Recorder()
    session = requests.Session()
    session.mount("https://", recorder)
    exporter = span_exporter("https://cloud.example/api/public/otel",
                             {"Authorization": "Basic abc", "Langsmith-Project": "agents"},
                             session=session)
    assert exporter.export(spans_of()) is SpanExportResult.SUCCESS
    [sent] = recorder.requests
    assert sent.url == "https://cloud.example/api/public/otel/v1/traces"
    assert sent.headers["Authorization"] == "Basic abc"
    assert sent.headers["Langsmith-Project"] == "agents"
    assert sent.headers["Content-Type"] == "application/x-protobuf"
    body = sent.body if isinstance(sent.body, bytes) else b""
    if sent.headers.get("Content-Encoding") == "gzip":
        import gzip
        body = gzip.decompress(body)
    request = ExportTraceServiceRequest.FromString(body)
    spans = [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert len(spans) == 9
    assert {s.trace_id.hex() for s in spans} == {SESSION_TRACE}


def test_traces_url_appends_the_signal_path_once() -> None:
    assert traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("http://127.0.0.1:4318/") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("http://h/otel/v1/traces") == "http://h/otel/v1/traces"


# -- the wiring --------------------------------------------------------------------------------

class FakeApp:
    """Records the tasks a pipeline registers instead of running them."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def task(self, fun: Any) -> Any:
        self.tasks.append(fun.__name__)
        return fun


@pytest.mark.parametrize(("mode", "otlp", "exports"), [
    ({}, "http://127.0.0.1:4318", True),
    ({}, None, False),
    ({"backfill": True}, "http://127.0.0.1:4318", False),
    ({"helper": True}, "http://127.0.0.1:4318", False),
])
def test_only_run_with_an_otlp_endpoint_exports_traces(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: dict[str, bool],
        otlp: str | None, exports: bool) -> None:
    from types import SimpleNamespace

    from opentelemetry.sdk.metrics import MeterProvider

    from app import pipeline
    from app.endpoints import Endpoints
    from streams.settings import Settings

    monkeypatch.setattr(pipeline, "create_app", lambda *args, **kwargs: FakeApp())
    monkeypatch.setattr(pipeline, "start_metrics", lambda *args, **kwargs: SimpleNamespace(
        meter_provider=MeterProvider(), url=None, otlp_endpoint=None))
    settings = Settings(state_dir=tmp_path, metrics_port=0, api_port=0,
                        _env_file=None)  # type: ignore[call-arg]
    endpoints = Endpoints(broker_url="kafka://127.0.0.1:1",
                          postgres_dsn="postgresql://x@127.0.0.1:1/x", otlp_endpoint=otlp)
    built = pipeline.Pipeline(settings, endpoints, report=lambda message: None, **mode)
    assert ("_run_traces" in built.app.tasks) is exports  # type: ignore[attr-defined]
