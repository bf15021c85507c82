"""Unit tests of the client helpers: DSN/URL parsing, PostgreSQL reconnect, Kafka ack handling."""
from __future__ import annotations

import pytest
from pg8000.exceptions import DatabaseError, InterfaceError

from movierecs_core.errors import from_unavailable
from movierecs_core.stores import Unavailable, kafka
from movierecs_core.stores.clickhouse import client_kwargs
from movierecs_core.stores.postgres import Postgres, dsn_kwargs


def test_dsn_and_url_parsing():
    kw = dsn_kwargs("postgresql://movierecs@127.0.0.1:15432/movierecs")
    assert kw["user"] == "movierecs" and kw["port"] == 15432 and kw["database"] == "movierecs" and "password" not in kw
    assert dsn_kwargs("postgresql://u:p%40ss@h/db")["password"] == "p@ss"
    with pytest.raises(ValueError):
        dsn_kwargs("mysql://x")
    ck = client_kwargs("http://127.0.0.1:18123")
    assert ck["host"] == "127.0.0.1" and ck["port"] == 18123 and ck["database"] == "movierecs" and ck["compress"] is False
    assert client_kwargs("https://u:pw@ch.example:8443/other")["database"] == "other"


class Conn:
    """A pg8000 native connection's prepare/run/close; ``fail_with`` breaks every statement."""

    def __init__(self, fail_with=None):
        self.fail_with, self.closed, self.prepared = fail_with, False, []

    def prepare(self, sql):
        self.prepared.append(sql)
        return type("Stmt", (), {"run": lambda _self, **params: self.run(sql, **params)})()

    def run(self, sql, **params):
        if self.fail_with:
            raise self.fail_with
        return [[1]]

    def close(self):
        self.closed = True


def test_postgres_prepares_each_statement_once_per_connection(monkeypatch):
    pg = Postgres("postgresql://u@127.0.0.1:1/db")
    conns = [Conn(), Conn()]
    made = list(conns)
    monkeypatch.setattr(pg, "_connect", lambda: conns.pop(0))
    for _ in range(3):
        assert pg.run("SELECT 1") == [[1]]
    assert made[0].prepared == ["SELECT 1"]
    made[0].fail_with = InterfaceError("network error")  # the server went away
    assert pg.run("SELECT 1") == [[1]]  # a new connection, the statement prepared on it again
    assert made[1].prepared == ["SELECT 1"] and made[0].closed


def test_postgres_reconnects_once_after_a_broken_connection(monkeypatch):
    pg = Postgres("postgresql://u@127.0.0.1:1/db")
    conns = [Conn(InterfaceError("network error")), Conn()]
    monkeypatch.setattr(pg, "_connect", lambda: conns.pop(0))
    assert pg.run("SELECT 1") == [[1]]
    assert not conns


def test_postgres_reconnects_after_server_shutdown_but_not_after_sql_errors(monkeypatch):
    pg = Postgres("postgresql://u@127.0.0.1:1/db")
    shutdown = DatabaseError({"C": "57P01", "M": "terminating connection due to administrator command"})
    conns = [Conn(shutdown), Conn()]
    monkeypatch.setattr(pg, "_connect", lambda: conns.pop(0))
    assert pg.run("SELECT 1") == [[1]]
    pg2 = Postgres("postgresql://u@127.0.0.1:1/db")
    syntax = DatabaseError({"C": "42601", "M": "syntax error"})
    monkeypatch.setattr(pg2, "_connect", lambda: Conn(syntax))
    with pytest.raises(DatabaseError):
        pg2.run("SELEC 1")


def test_postgres_down_is_503(monkeypatch):
    pg = Postgres("postgresql://u@127.0.0.1:1/db")
    monkeypatch.setattr(pg, "_connect", lambda: Conn(InterfaceError("refused")))
    with pytest.raises(Unavailable) as e:  # neutral; the web layer answers it with:
        pg.run("SELECT 1")
    assert from_unavailable(e.value).status == 503


def test_kafka_send_waits_for_the_ack_and_maps_failures_to_503(monkeypatch):
    class Future:
        def __init__(self, ok):
            self.ok = ok

        def get(self, timeout):
            if not self.ok:
                raise TimeoutError("no ack")
            return "metadata"

    class Producer:
        def __init__(self, ok):
            self.ok, self.sent = ok, []

        def send(self, topic, key, value):
            self.sent.append((topic, key, value))
            return Future(self.ok)

        def close(self, timeout=0):
            pass

    good = Producer(True)
    monkeypatch.setattr(kafka, "_new_producer", lambda b: good)
    kafka.reset_producer("b:1")
    assert kafka.send_and_wait("b:1", "interactions", b"7", b"{}") == "metadata"
    assert good.sent == [("interactions", b"7", b"{}")]
    bad = Producer(False)
    monkeypatch.setattr(kafka, "_new_producer", lambda b: bad)
    kafka.reset_producer("b:1")
    with pytest.raises(Unavailable) as e:  # neutral; the web layer answers it with:
        kafka.send_and_wait("b:1", "interactions", b"7", b"{}")
    assert from_unavailable(e.value).status == 503 and "not recorded" in from_unavailable(e.value).message
    assert "b:1" not in kafka._producers  # a failed producer is rebuilt next time
