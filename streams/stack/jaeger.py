"""Jaeger v2 (in-memory storage) as a real OTLP trace receiver with a query API, on loopback.

Used where a real trace backend is needed: the tests export session traces to its OTLP/HTTP
receiver and read them back through its query API (``/api/traces/<trace id>``). Jaeger is
built from source with Go (1.24+) on first use, from the Go module proxy, into
``<cache_dir>/bin/jaeger-<version>/jaeger`` and reused by every later start (a first build
takes minutes; Go's own module and build caches make later ones quick). A half-finished build
is never used: the binary is moved into place only once built. The binary serves the query API
without the web UI (its assets are not part of a plain ``go build``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from streams.errors import StackError
from streams.stack.base import Server
from streams.stack.process import tcp_accepts

__all__ = ["JAEGER_VERSION", "JaegerServer", "jaeger_binary"]

logger = logging.getLogger(__name__)

JAEGER_VERSION = "v1.76.0"  # the Go module version; it ships the Jaeger v2 binary
JAEGER_PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"


def jaeger_binary(cache_dir: Path, version: str = JAEGER_VERSION) -> Path:
    """The Jaeger executable under ``cache_dir``, built with Go on first use.

    Raises :class:`StackError` when Go is missing or the build fails (with the build's tail).
    """
    target = cache_dir / "bin" / f"jaeger-{version}"
    binary = target / "jaeger"
    if binary.exists():
        return binary
    go = shutil.which("go", path=os.environ.get("PATH", "") + ":/usr/local/go/bin")
    if go is None:
        raise StackError(f"Jaeger is not built in {target} and Go is not installed to build "
                         "it; install Go 1.24+ (https://go.dev/dl/)")
    print(f"jaeger: building {JAEGER_PACKAGE}@{version} with Go into {target} "
          "(first run only, a few minutes)...", flush=True)
    work = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    steps = [[go, "mod", "init", "sessionstream-jaeger"],
             [go, "get", "-tool", f"{JAEGER_PACKAGE}@{version}"],
             [go, "build", "-o", "jaeger", JAEGER_PACKAGE]]
    for argv in steps:
        result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise StackError(f"building Jaeger failed ({' '.join(argv[1:3])} exit "
                             f"{result.returncode}):\n" + (result.stdout + result.stderr)[-2000:])
    target.mkdir(parents=True, exist_ok=True)
    (work / "jaeger").replace(binary)  # atomic: a concurrent builder's result is equal
    shutil.rmtree(work, ignore_errors=True)
    return binary


class JaegerServer(Server):
    """``http://127.0.0.1:<otlp port>``, the OTLP/HTTP base URL (``SESSIONSTREAM_OTLP_ENDPOINT``);
    :meth:`query_url` is the query API. Ports: the usual 4318 and 16686 when free, else any."""

    name = "jaeger"

    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        stack = self.settings.stack
        return {"otlp": (stack.jaeger_otlp_port, 4318, "SESSIONSTREAM_STACK__JAEGER_OTLP_PORT"),
                "query": (stack.jaeger_query_port, 16686,
                          "SESSIONSTREAM_STACK__JAEGER_QUERY_PORT"),
                "query_grpc": (None, 16685, "the query gRPC port")}

    def endpoint_for(self, ports: dict[str, int]) -> str:
        return f"http://127.0.0.1:{ports['otlp']}"

    def query_url(self) -> str | None:
        """The query API's base URL (``/api/traces/<id>``, ``/api/services``), or None when
        Jaeger is not running."""
        ports = self.process.remembered_ports()
        return f"http://127.0.0.1:{ports['query']}" if ports and self.running() else None

    def prepare(self) -> None:
        self.binary = jaeger_binary(self.settings.cache_dir)

    def start(self, ports: dict[str, int]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "jaeger.json"  # YAML is a superset of JSON
        config.write_text(json.dumps(_config(ports), indent=2))
        self.process.spawn([str(self.binary), f"--config=file:{config}"], cwd=self.directory)

    def is_ready(self, ports: dict[str, int]) -> bool:
        if not tcp_accepts(ports["otlp"]):
            return False
        url = f"http://127.0.0.1:{ports['query']}/api/services"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _config(ports: dict[str, int]) -> dict[str, object]:
    """OTLP/HTTP in, memory storage, the query API; nothing else listens (no metrics, no
    sampling, no gRPC receiver), and Jaeger does not trace itself."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {"traces": {"receivers": ["otlp"],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {
                "enable_tracing": False, "storage": {"traces": "memstore"},
                "http": {"endpoint": f"127.0.0.1:{ports['query']}"},
                "grpc": {"endpoint": f"127.0.0.1:{ports['query_grpc']}"},
            },
        },
        "receivers": {"otlp": {"protocols": {
            "http": {"endpoint": f"127.0.0.1:{ports['otlp']}"}}}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
