"""Where the metrics go: a Prometheus endpoint, and OTLP/HTTP when an endpoint is configured.

:func:`start_metrics` builds one ``MeterProvider`` with a Prometheus reader on a *dedicated*
``CollectorRegistry`` (so two exporters in one process never clash, and nothing else that uses
prometheus_client's global registry leaks into the endpoint), served by prometheus_client's HTTP
server, plus a periodic OTLP/HTTP reader with cumulative temporality for every instrument (the
derived totals are absolute values; delta export would lose that). Pass the returned
:attr:`MetricsExport.meter_provider` to :class:`~projections.otel.metrics.SessionMetrics`, and
call :meth:`MetricsExport.shutdown` at exit. The global meter provider is not touched. Port 0
means no Prometheus endpoint (the setting's "off"), not "any free port".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIServer

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, start_http_server

from streams.errors import ConfigError

__all__ = ["MetricsExport", "start_metrics"]

logger = logging.getLogger(__name__)

_CUMULATIVE: dict[type, AggregationTemporality] = {
    kind: AggregationTemporality.CUMULATIVE for kind in (
        Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter,
        ObservableGauge)}


@dataclass
class MetricsExport:
    """A running exporter: the provider to create instruments on, and where metrics go."""

    meter_provider: MeterProvider
    registry: CollectorRegistry
    host: str
    port: int | None  # the bound Prometheus port; None when the endpoint is off
    otlp_endpoint: str | None  # the full OTLP/HTTP metrics URL; None when OTLP is off
    _server: WSGIServer | None
    _thread: threading.Thread | None
    _stopped: bool = field(default=False)

    @property
    def url(self) -> str | None:
        """The scrape URL, or None when the Prometheus endpoint is off."""
        return None if self.port is None else f"http://{self.host}:{self.port}/metrics"

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop serving, export once more over OTLP (if on) and release the readers. Idempotent.

        Blocks up to about ``timeout_s`` when the OTLP endpoint does not answer.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout_s)
        self.meter_provider.shutdown(timeout_millis=timeout_s * 1000)


def start_metrics(metrics_port: int, otlp_endpoint: str | None, host: str = "127.0.0.1", *,
                  export_interval_s: float = 15.0, otlp_timeout_s: float = 5.0,
                  otlp_headers: Mapping[str, str] | None = None) -> MetricsExport:
    """Serve ``http://host:metrics_port/metrics`` and, if ``otlp_endpoint`` is set, push there.

    ``metrics_port=0`` turns the Prometheus endpoint off (``SESSIONSTREAM_METRICS_PORT=0``).
    ``otlp_endpoint`` is the OTLP/HTTP base URL (``http://host:4318``; ``/v1/metrics`` is
    appended unless already there), sent with ``otlp_headers`` (``SESSIONSTREAM_OTLP_HEADERS``,
    for hosted backends); an unreachable collector only logs at export time. Raises
    :class:`~streams.errors.ConfigError` naming ``SESSIONSTREAM_METRICS_PORT`` when the port
    cannot be bound (already in use, or not allowed).
    """
    registry = CollectorRegistry(auto_describe=True)
    server, thread = _serve(registry, host, metrics_port) if metrics_port else (None, None)
    readers: list[MetricReader] = []
    if server is not None:
        readers.append(PrometheusMetricReader(registry=registry))
    endpoint = _metrics_url(otlp_endpoint) if otlp_endpoint else None
    if endpoint is not None:
        exporter = OTLPMetricExporter(endpoint=endpoint, timeout=otlp_timeout_s,
                                      headers=dict(otlp_headers or {}),
                                      preferred_temporality=_CUMULATIVE)
        readers.append(PeriodicExportingMetricReader(
            exporter, export_interval_millis=export_interval_s * 1000,
            export_timeout_millis=otlp_timeout_s * 1000))
    provider = MeterProvider(metric_readers=readers, resource=_resource())
    port = server.server_address[1] if server is not None else None
    logger.info("metrics prometheus=%s otlp=%s",
                f"http://{host}:{port}/metrics" if port else "off", endpoint or "off")
    return MetricsExport(provider, registry, host, port, endpoint, server, thread)


def _serve(registry: CollectorRegistry, host: str,
           port: int) -> tuple[WSGIServer, threading.Thread]:
    try:
        return start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"SESSIONSTREAM_METRICS_PORT={port}: cannot serve metrics on {host}:{port} "
            f"({exc.strerror or exc}); free the port or choose another (0 turns it off)"
        ) from exc


def _metrics_url(base: str) -> str:
    base = base.rstrip("/")
    return base if urlsplit(base).path.endswith("/v1/metrics") else f"{base}/v1/metrics"


def _resource() -> Resource:
    try:
        service_version = version("sessionstream")
    except PackageNotFoundError:
        service_version = "unknown"
    return Resource.create({"service.name": "sessionstream", "service.version": service_version})
