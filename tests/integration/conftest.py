"""Fixtures of the whole-pipeline tests: the CLI's environment on the real test stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.pipeline_helpers import cli_env


@pytest.fixture
def pipeline_env(stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    """Real Kafka 4.1, a fresh Postgres database, a private state dir; no Neo4j."""
    return cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                   SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                   SESSIONSTREAM_METRICS_PORT="0")
