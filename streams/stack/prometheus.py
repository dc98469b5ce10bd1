"""Prometheus (Debian's package) scraping the worker's metrics endpoint, on loopback.

Used where a real scraper is needed: the tests read back through its HTTP API what it scraped
from ``127.0.0.1:<SESSIONSTREAM_METRICS_PORT>``. Install it with ``apt-get install prometheus``
(``make setup`` does, as root).
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request

from streams.errors import StackError
from streams.stack.base import Server

__all__ = ["PrometheusServer"]


class PrometheusServer(Server):
    """``http://127.0.0.1:<port>``; port from ``SESSIONSTREAM_STACK__PROMETHEUS_PORT``."""

    name = "prometheus"

    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        return {"http": (self.settings.stack.prometheus_port, 9090,
                         "SESSIONSTREAM_STACK__PROMETHEUS_PORT")}

    def endpoint_for(self, ports: dict[str, int]) -> str:
        return f"http://127.0.0.1:{ports['http']}"

    def prepare(self) -> None:
        binary = shutil.which("prometheus", path=os.environ.get("PATH", "") + ":/usr/bin")
        if binary is None:
            raise StackError("Prometheus is not installed: apt-get install prometheus "
                             "(or run `make setup` as root)")
        self.binary = binary

    def start(self, ports: dict[str, int]) -> None:
        config = self.directory / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: sessionstream\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{self.settings.metrics_port}']\n"
        )
        self.process.spawn([
            self.binary, f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['http']}", "--web.enable-lifecycle",
        ])

    def is_ready(self, ports: dict[str, int]) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_for(ports)}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False
