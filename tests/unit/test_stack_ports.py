"""Port checks of the stack orchestrator: free/busy detection, env overrides, conflict messages."""
from __future__ import annotations

import socket

import pytest

from movierecs_stack import procs
from movierecs_stack.config import Layout, port_for
from movierecs_stack.services import Ctx
from movierecs_stack.stack import Stack


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_free_and_open(listener):
    assert not procs.port_free(listener)
    assert procs.port_open(listener)
    other = free_port()
    assert procs.port_free(other)
    assert not procs.port_open(other)


def test_listeners_finds_this_process(listener):
    import os

    assert procs.listeners(listener) == [os.getpid()]
    assert procs.listeners(free_port()) == []


def test_port_for_defaults_and_overrides():
    assert port_for("kafka", {}) == 19092
    assert port_for("localstack", {}) == 4566
    assert port_for("kafka", {"MOVIERECS_KAFKA_PORT": "29999"}) == 29999
    with pytest.raises(SystemExit, match="MOVIERECS_KAFKA_PORT"):
        port_for("kafka", {"MOVIERECS_KAFKA_PORT": "nope"})
    with pytest.raises(SystemExit, match="out of range"):
        port_for("kafka", {"MOVIERECS_KAFKA_PORT": "70000"})


def free_ports_env(**override: int) -> dict[str, str]:
    from movierecs_stack.config import PORTS

    env = {var: str(free_port()) for _, var in PORTS.values()}  # every service, whatever the list holds
    env.update({k: str(v) for k, v in override.items()})
    return env


def test_conflict_names_port_holder_and_env_var(tmp_path, listener):
    stack = Stack(Ctx(Layout(root=tmp_path), free_ports_env(MOVIERECS_KAFKA_PORT=listener)))
    msgs = stack.port_conflicts(stack.backing)
    assert len(msgs) == 1
    msg = msgs[0]
    assert f"port {listener} " in msg and "MOVIERECS_KAFKA_PORT" in msg and "Kafka" in msg and "did not start" in msg
    import os

    assert f"pid {os.getpid()}" in msg


def test_up_with_a_busy_port_starts_nothing(tmp_path, listener):
    stack = Stack(Ctx(Layout(root=tmp_path), free_ports_env(MOVIERECS_KAFKA_PORT=listener)))
    from movierecs_stack.services import ServiceError

    with pytest.raises(ServiceError, match=f"port {listener}"):
        stack.up(deploy_app=False, bootstrap=False)
    assert stack.started == []
    assert stack.pids.names() == []
