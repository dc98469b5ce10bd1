"""The contract of docker-compose.yml, checked without Docker: every service exists with a
healthcheck; the worker's environment builds a :class:`Settings` whose endpoints name compose
services on container ports they publish; Prometheus scrapes the worker's metrics port; every
published port keeps its number on the host, and the defaults (``metrics_port``, the local
stack's usual ports) are the ones published; the worker waits for its servers to be healthy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import ENV_PREFIX, Settings
from streams.stack import SERVERS

pytestmark = pytest.mark.unit

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
WORKER = "sessionstream"
SERVICES = ["kafka", "postgres", "neo4j", "otel-collector", "prometheus", "grafana", WORKER]
ENDPOINTS = ["broker_url", "postgres_dsn", "neo4j_uri", "otlp_endpoint"]
# Compose service -> the key of its client port in the stack server's wanted_ports().
STACK_PORT_KEYS = {"kafka": "broker", "postgres": "pg", "neo4j": "bolt", "prometheus": "http"}

Compose = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> Compose:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(compose: Compose, name: str) -> dict[str, Any]:
    return compose["services"][name]


def published_ports(spec: dict[str, Any]) -> dict[int, int | None]:
    """``{container port: host port}`` from ``ports:``, short (``"h:c"``) or long syntax."""
    ports: dict[int, int | None] = {}
    for entry in spec.get("ports", []):
        if isinstance(entry, dict):
            published = entry.get("published")
            ports[int(entry["target"])] = int(published) if published is not None else None
        else:
            parts = str(entry).split("/")[0].split(":")
            ports[int(parts[-1])] = int(parts[-2]) if len(parts) > 1 else None
    return ports


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``Settings()`` seeing exactly ``env``: no other SESSIONSTREAM_* variable, no .env file."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return Settings(_env_file=None)  # type: ignore[call-arg]


def worker_settings(compose: Compose, monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = service(compose, WORKER).get("environment", {})
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) for item in env)
    return settings_from(env, monkeypatch)


def endpoint(settings: Settings, field: str) -> str | None:
    value = getattr(settings, field)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def hosts_and_ports(url: str) -> list[tuple[str, int | None]]:
    """Each ``(host, port)`` a URL names; a broker URL may list several, joined by ``;``."""
    parts = [urlsplit(part) for part in url.split(";") if part]
    return [(part.hostname or "", part.port) for part in parts]


def scrape_targets(compose: Compose) -> set[str]:
    """Every static target in the inline configs mounted into the prometheus service."""
    targets: set[str] = set()
    for ref in service(compose, "prometheus").get("configs", []):
        name = ref["source"] if isinstance(ref, dict) else ref
        config = yaml.safe_load(compose["configs"][name]["content"])
        for job in config.get("scrape_configs", []):
            for static in job.get("static_configs", []):
                targets.update(static.get("targets", []))
    return targets


@pytest.mark.parametrize("name", SERVICES)
def test_service_exists_with_a_healthcheck(compose: Compose, name: str) -> None:
    assert name in compose["services"], f"docker-compose.yml has no service {name!r}"
    check = service(compose, name).get("healthcheck", {})
    assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    assert check["test"] != ["NONE"], f"{name} disables its image's healthcheck"


@pytest.mark.parametrize("field", ENDPOINTS)
def test_endpoint_names_a_service_and_a_port_it_publishes(
    compose: Compose, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    url = endpoint(worker_settings(compose, monkeypatch), field)
    assert url, f"the {WORKER} service leaves {field} unset (embedded default, not compose)"
    for host, port in hosts_and_ports(url):
        assert host in compose["services"], f"{field}: {host!r} is not a compose service"
        assert port in published_ports(service(compose, host)), (
            f"{field}: {host} does not publish container port {port}"
        )


def test_metrics_port_is_published_and_scraped(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = worker_settings(compose, monkeypatch).metrics_port
    assert port in published_ports(service(compose, WORKER))
    assert f"{WORKER}:{port}" in scrape_targets(compose)


@pytest.mark.parametrize("name", SERVICES)
def test_published_ports_keep_their_number_on_the_host(compose: Compose, name: str) -> None:
    ports = published_ports(service(compose, name))
    assert ports, f"{name} publishes no port"
    assert all(host == container for container, host in ports.items()), f"{name}: {ports}"


def test_default_metrics_port_is_the_one_published(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = settings_from({}, monkeypatch).metrics_port
    assert published_ports(service(compose, WORKER)).get(default) == default


@pytest.mark.parametrize(("name", "key"), STACK_PORT_KEYS.items())
def test_stack_usual_port_is_the_one_published(
    compose: Compose, monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    usual = SERVERS[name](settings_from({}, monkeypatch)).wanted_ports()[key][1]
    assert published_ports(service(compose, name)).get(usual) == usual


def test_worker_waits_for_healthy_servers(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    depends_on = service(compose, WORKER).get("depends_on", {})
    assert isinstance(depends_on, dict), "the list form of depends_on has no condition"
    settings = worker_settings(compose, monkeypatch)
    used = {host for f in ENDPOINTS for host, _ in hosts_and_ports(endpoint(settings, f) or "")}
    assert used <= depends_on.keys(), "the worker must wait for every server it uses"
    for name, condition in depends_on.items():
        assert condition.get("condition") == "service_healthy", name
