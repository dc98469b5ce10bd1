"""The local stack's failures are explained: missing Java, a taken port, an unknown server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams.errors import StackError
from streams.settings import Settings
from streams.stack import Stack
from streams.stack.java import check_java
from streams.stack.process import ManagedProcess

pytestmark = pytest.mark.unit


def test_missing_java_is_named() -> None:
    with pytest.raises(StackError, match=r"Kafka needs Java 17\+, `no-such-java` not found"):
        check_java("no-such-java", "Kafka")


def test_configured_port_in_use_names_the_variable(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        process = ManagedProcess(tmp_path)
        with pytest.raises(StackError, match="SESSIONSTREAM_STACK__KAFKA_PORT"):
            process.choose_ports({"broker": (port, 9092, "SESSIONSTREAM_STACK__KAFKA_PORT")})


def test_usual_port_in_use_falls_back_and_is_remembered(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        process = ManagedProcess(tmp_path)
        chosen = process.choose_ports({"broker": (None, taken, "X")})
    assert chosen["broker"] != taken
    assert process.remembered_ports() == chosen
    assert ManagedProcess(tmp_path).choose_ports({"broker": (None, taken, "X")}) == chosen


def test_unknown_server_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="unknown server.*redis"):
        Stack(Settings(state_dir=tmp_path)).select(["redis"])


def test_status_of_a_never_started_stack_is_all_stopped(tmp_path: Path) -> None:
    statuses = Stack(Settings(state_dir=tmp_path)).status()
    assert [s.running for s in statuses] == [False] * 6
