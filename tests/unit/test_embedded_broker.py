"""Which broker is the zero-config default, and how a state dir tells its broker log apart."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.endpoints import Endpoints, remember_log, remembered_log
from streams.errors import StackError
from streams.settings import Settings
from streams.stack.embedded import KEEPS, choose_embedded_broker
from streams.stack.kafka import KafkaServer

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                    _env_file=None, **values)  # type: ignore[call-arg]


def _fake_java(tmp_path: Path, version: str) -> str:
    java = tmp_path / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}"\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return str(java)


def test_kafka_is_the_default_when_java_17_and_maven_are_there(tmp_path: Path) -> None:
    settings = _settings(tmp_path, stack={"java": _fake_java(tmp_path, "17.0.2")})
    jars = settings.cache_dir / "jars" / "kafka-0123456789ab"
    jars.mkdir(parents=True)
    (jars / ".complete").touch()  # cached jars: no Maven needed
    assert choose_embedded_broker(settings) == ("kafka", None)
    assert "on disk" in KEEPS["kafka"] and "memory" in KEEPS["tansu"]


def test_without_java_the_default_is_tansu_with_a_warning_naming_why(tmp_path: Path) -> None:
    settings = _settings(tmp_path, stack={"java": str(tmp_path / "no-java")})
    name, warning = choose_embedded_broker(settings)
    assert name == "tansu"
    assert warning is not None and "needs Java 17+" in warning and "in memory" in warning
    old = _settings(tmp_path, stack={"java": _fake_java(tmp_path, "11.0.1")})
    assert choose_embedded_broker(old)[0] == "tansu"


def test_an_explicit_choice_is_kept_or_fails_naming_the_cause(tmp_path: Path) -> None:
    tansu = _settings(tmp_path, embedded_broker="tansu")
    assert choose_embedded_broker(tansu)[0] == "tansu"
    kafka = _settings(tmp_path, embedded_broker="kafka", stack={"java": str(tmp_path / "x")})
    with pytest.raises(StackError, match="Java 17"):
        choose_embedded_broker(kafka)


def test_the_state_dir_remembers_which_log_its_positions_point_into(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert remembered_log(settings) is None  # a first start, or a state dir of an old version
    endpoints = Endpoints(broker_url="kafka://127.0.0.1:1", postgres_dsn="postgresql://x/y",
                          embedded_broker="kafka", log_identity="kafka:abc")
    remember_log(settings, endpoints)
    assert remembered_log(settings) == "kafka:abc"
    (settings.state_dir / "checkpoints" / "broker-log.json").write_text("{not json")
    assert remembered_log(settings) is None  # unreadable: start over, never trust it


def test_kafkas_log_identity_is_its_cluster_id(tmp_path: Path) -> None:
    server = KafkaServer(_settings(tmp_path))
    assert server.log_identity() is None  # never formatted
    data = server.directory / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("#\nnode.id=1\ncluster.id=Xy12\nversion=1\n")
    assert server.log_identity() == "kafka:Xy12"
    os.remove(data / "meta.properties")
    assert server.log_identity() is None
