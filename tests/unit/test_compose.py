"""The contract of docker-compose.yml, checked without Docker: every service exists with a
healthcheck; the worker's environment builds a :class:`Settings` whose endpoints name compose
services on container ports they publish; Prometheus scrapes the worker's metrics port; every
published port keeps its number on the host, and the defaults (``metrics_port``, the local
stack's usual ports) are the ones published; the worker waits for its servers to be healthy.
The worker is built from the Dockerfile and installs nothing when it starts; every source's
default root is mounted read-only from a ``HOST_*`` variable; the publish API is published with
a token and is the healthcheck; no metric reaches Prometheus twice (the collector is not
scraped and exports no metrics to it); traces go to Jaeger; Grafana provisions the
repository's dashboards.
"""

from __future__ import annotations

import os
import re
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
SERVICES = ["kafka", "postgres", "neo4j", "otel-collector", "jaeger", "prometheus", "grafana",
            WORKER]
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


# -- the worker's image, its folders, the API, metrics scraped once, traces, dashboards --------

ROOT = COMPOSE_FILE.parent
DOCKERFILE = ROOT / "Dockerfile"
CONTAINER_HOME = "/root"  # HOME of python:3.11-slim's root user, who runs the worker
COLLECTOR = "otel-collector"
GRAFANA = "grafana"


def split_volume(entry: str) -> tuple[str, str, str]:
    """``(source, target, mode)`` of a short-syntax volume, colons inside ``${...}`` kept."""
    parts, current, depth, i = [], "", 0, 0
    while i < len(entry):
        if entry.startswith("${", i):
            depth, current, i = depth + 1, current + "${", i + 2
            continue
        char = entry[i]
        if char == "}" and depth:
            depth -= 1
        if char == ":" and not depth:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    parts.append(current)
    source, target, *mode = parts
    return source, target, mode[0] if mode else "rw"


def volumes(compose: Compose, name: str) -> list[tuple[str, str, str]]:
    found = []
    for entry in service(compose, name).get("volumes", []):
        if isinstance(entry, dict):
            found.append((str(entry.get("source", "")), str(entry["target"]),
                          "ro" if entry.get("read_only") else "rw"))
        else:
            found.append(split_volume(str(entry)))
    return found


def words(value: object) -> str:
    """A command, entrypoint or healthcheck as one string, whatever its form."""
    return " ".join(value) if isinstance(value, list) else str(value or "")


def collector_config(compose: Compose) -> dict[str, Any]:
    [ref] = service(compose, COLLECTOR)["configs"]
    return yaml.safe_load(compose["configs"][ref["source"]]["content"])


def test_the_worker_is_built_from_the_dockerfile(compose: Compose) -> None:
    spec = service(compose, WORKER)
    build = spec.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    assert context in (".", "./"), f"the worker must be built from the repository: {build!r}"
    text = DOCKERFILE.read_text()
    assert text.splitlines()[[i for i, line in enumerate(text.splitlines())
                              if line.startswith("FROM")][0]] == "FROM python:3.11-slim"
    assert any(line.startswith("RUN ") and "pip install ." in line for line in text.splitlines())
    assert "sessionstream" in words(spec.get("command")) or 'CMD ["sessionstream", "run"]' in text
    assert (ROOT / ".dockerignore").is_file()
    assert not any(target == "/app" for _, target, _ in volumes(compose, WORKER)), \
        "the image holds the code: no checkout mounted over it"


@pytest.mark.parametrize("name", [*SERVICES, "probe-tools"])
def test_nothing_is_installed_when_a_container_starts(compose: Compose, name: str) -> None:
    spec = service(compose, name)
    for key in ("command", "entrypoint"):
        assert "pip install" not in words(spec.get(key)), f"{name} {key} installs at start"
    assert "pip install" not in words(spec.get("healthcheck", {}).get("test"))
    if name == WORKER:
        cmd = [line for line in DOCKERFILE.read_text().splitlines()
               if line.startswith(("CMD", "ENTRYPOINT"))]
        assert cmd and all("pip" not in line for line in cmd)


def test_every_source_root_is_mounted_read_only_from_a_variable(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.sources import producer_classes

    env = {**service(compose, WORKER).get("environment", {}), "HOME": CONTAINER_HOME}
    mounts = [(source, target, mode) for source, target, mode in volumes(compose, WORKER)
              if target != "/var/lib/sessionstream"]
    for producer in producer_classes():
        roots = producer.default_roots({k: str(v) for k, v in env.items()})
        assert roots, f"{producer.source}: no root inside the container (set its variable)"
        for root in roots:
            holding = [m for m in mounts if root.is_relative_to(m[1])]
            assert holding, f"{producer.source}: {root} is not mounted"
            source, target, mode = holding[0]
            assert mode == "ro", f"{target} must be read-only"
            assert re.fullmatch(r"\$\{HOST_[A-Z_]+:-.+\}", source), (
                f"{target}: the host folder must be a ${{HOST_...:-default}} variable, "
                f"not {source!r}")


def test_the_publish_api_is_published_with_a_token_and_is_the_healthcheck(
    compose: Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings(compose, monkeypatch)
    assert settings.api_port == 8787
    assert published_ports(service(compose, WORKER)).get(settings.api_port) == settings.api_port
    assert settings.api_host == "0.0.0.0" and settings.api_token is not None
    test = words(service(compose, WORKER)["healthcheck"]["test"])
    assert "urllib" in test and f"http://127.0.0.1:{settings.api_port}/api/v1/health" in test


def test_no_metric_is_scraped_twice(compose: Compose) -> None:
    config = collector_config(compose)
    assert not any(host.startswith(COLLECTOR) for host in scrape_targets(compose)), \
        "Prometheus scrapes the collector, which holds the worker's metrics a second time"
    exporters = config["service"]["pipelines"]["metrics"]["exporters"]
    assert not any(e.split("/")[0] == "prometheus" for e in exporters)
    assert not any(e.split("/")[0] == "prometheus" for e in config.get("exporters", {}))


def test_the_collector_sends_traces_to_jaeger(compose: Compose) -> None:
    config = collector_config(compose)
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    host, _, port = config["exporters"][exporter]["endpoint"].rpartition(":")
    assert host.split("//")[-1] == "jaeger" and port in ("4317", "4318")
    assert service(compose, "jaeger")["image"].startswith("jaegertracing/jaeger")
    assert published_ports(service(compose, "jaeger")) == {16686: 16686}
    depends = service(compose, COLLECTOR).get("depends_on", {})
    assert depends.get("jaeger", {}).get("condition") == "service_healthy"


def test_grafana_provisions_the_dashboards_of_the_repository(compose: Compose) -> None:
    mounted = {target: (source, mode) for source, target, mode in volumes(compose, GRAFANA)}
    source, mode = mounted["/etc/grafana/provisioning"]
    provisioning = ROOT / source
    assert mode == "ro" and (provisioning / "datasources").is_dir()
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.yaml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers, "no dashboard provider"
    for provider in providers:
        path = provider["options"]["path"]
        assert path in mounted, f"the provider reads {path}, which is not mounted"
        dashboards = ROOT / mounted[path][0]
        assert sorted(dashboards.glob("*.json")), f"no dashboard in {dashboards}"
    assert (ROOT / mounted["/etc/grafana/dashboards"][0] / "overview.json").is_file()
