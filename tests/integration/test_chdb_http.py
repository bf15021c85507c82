"""The chDB ClickHouse HTTP endpoint against the real clickhouse-connect client.

Runs against the stack's endpoint (``make up``), in a throwaway database per test run, and
against private endpoint instances started here (own port, own data dir) for persistence.
"""
from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pandas as pd
import pytest

clickhouse_connect = pytest.importorskip("clickhouse_connect")
from clickhouse_connect.driver.exceptions import DatabaseError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def stack_url() -> str:
    try:
        return json.loads((ROOT / ".movierecs" / "endpoints.json").read_text())["clickhouse"]
    except (OSError, ValueError, KeyError):
        return f"http://127.0.0.1:{os.environ.get('MOVIERECS_CLICKHOUSE_PORT', '18123')}"


def host_port(url: str) -> tuple[str, int]:
    hp = url.split("://", 1)[1].rstrip("/")
    h, p = hp.rsplit(":", 1)
    return h, int(p)


@pytest.fixture(scope="module")
def endpoint() -> tuple[str, int]:
    url = stack_url()
    try:
        with urllib.request.urlopen(url + "/ping", timeout=3) as r:
            assert r.read() == b"Ok.\n"
    except OSError as ex:
        pytest.fail(f"the stack's ClickHouse endpoint {url} does not answer ({ex}): run `make up` first")
    return host_port(url)


@pytest.fixture(scope="module")
def db(endpoint):
    name = f"it_chdb_{uuid.uuid4().hex[:8]}"
    c = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1])
    c.command(f"CREATE DATABASE {name}")
    yield name
    c.command(f"DROP DATABASE IF EXISTS {name}")


def _worker(args: tuple[str, int, str, int]) -> dict:
    """One client process: DDL, insert, query, query_df, insert_df, parameters, errors."""
    host, port, db, wid = args
    c = clickhouse_connect.get_client(host=host, port=port, database=db)
    table = f"w{wid}"
    c.command(f"CREATE TABLE {table} (id UInt32, name String, ts DateTime64(3, 'UTC')) "
              "ENGINE = ReplacingMergeTree ORDER BY id")
    now = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
    rows = [[i, f"n{wid}-{i}", now] for i in range(20000)]
    written = c.insert(table, rows, column_names=["id", "name", "ts"]).written_rows
    df = pd.DataFrame({"id": range(20000, 21000), "name": [f"df{i}" for i in range(1000)],
                       "ts": pd.Timestamp("2026-11-27T12:00:00Z")})
    c.insert_df(table, df)
    out = {"written": written}
    for _ in range(30):  # interleave with the other process
        out["count"] = c.command(f"SELECT count() FROM {table}")
        out["by_param"] = c.query(f"SELECT name FROM {table} WHERE id = {{id:UInt32}}", parameters={"id": 7}).result_rows
        out["client_side"] = c.query(f"SELECT name FROM {table} WHERE id = %(id)s", parameters={"id": 8}).result_rows
    qdf = c.query_df(f"SELECT id, name FROM {table} WHERE id >= 20990 ORDER BY id")
    out["df"] = qdf["id"].tolist()
    out["df_names"] = qdf["name"].tolist()[:2]
    out["ts"] = c.query(f"SELECT ts FROM {table} WHERE id = 1").result_rows[0][0].isoformat()
    try:
        c.query("SELECT * FROM no_such_table_here")
        out["error"] = None
    except DatabaseError as ex:
        out["error"] = str(ex)
    return out


def test_two_processes_at_once(endpoint, db):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_worker, [(endpoint[0], endpoint[1], db, 1), (endpoint[0], endpoint[1], db, 2)])
    for wid, r in zip((1, 2), results):
        assert r["written"] == 20000
        assert r["count"] == 21000
        assert r["by_param"] == [(f"n{wid}-7",)]
        assert r["client_side"] == [(f"n{wid}-8",)]
        assert r["df"] == list(range(20990, 21000))
        assert r["df_names"] == ["df990", "df991"]
        assert r["ts"].startswith("2026-11-27T12:00:00")
        assert "code: 60" in r["error"] and "UNKNOWN_TABLE" in r["error"]


def test_settings_apply_per_request_only(endpoint, db):
    c = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1], database=db)
    default = c.command("SELECT getSetting('max_block_size')")
    assert c.command("SELECT getSetting('max_block_size')", settings={"max_block_size": 1234}) == 1234
    assert c.command("SELECT getSetting('max_block_size')") == default  # not leaked into the next request
    with pytest.raises(DatabaseError, match="115|UNKNOWN_SETTING"):
        c.query("SELECT 1", settings={"no_such_setting_xyz": 1})


def test_database_param_and_ddl_commands(endpoint, db):
    c = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1], database=db)
    assert c.command("SELECT currentDatabase()") == db
    c.command("CREATE TABLE IF NOT EXISTS kv (k String, v Float64) ENGINE = MergeTree ORDER BY k")
    assert "kv" in c.command("SHOW TABLES")
    assert c.command("SELECT 1 WHERE 0") == ""  # empty result set, reported as one
    other = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1])
    assert other.command("SELECT currentDatabase()") == "default"


@pytest.mark.parametrize("compress", [True, False, "lz4", "gzip"])
def test_compressed_inserts_and_responses(endpoint, db, compress):
    c = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1], database=db, compress=compress)
    t = f"comp_{str(compress).lower()}"
    c.command(f"CREATE TABLE {t} (a UInt64, s String) ENGINE = MergeTree ORDER BY a")
    c.insert(t, [[i, "x" * (i % 50)] for i in range(50000)], column_names=["a", "s"])
    assert c.query(f"SELECT count(), sum(a) FROM {t}").result_rows == [(50000, sum(range(50000)))]


def test_raw_http_errors_look_like_clickhouse(endpoint):
    base = f"http://{endpoint[0]}:{endpoint[1]}"
    for path in ("/ping", "/"):
        with urllib.request.urlopen(base + path, timeout=5) as r:
            assert r.read() == b"Ok.\n"
    req = urllib.request.Request(base + "/", data=b"SELEC 1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    body = ei.value.read().decode()
    assert ei.value.code == 400 and ei.value.headers["X-ClickHouse-Exception-Code"] == "62"
    assert body.startswith("Code: 62. DB::Exception:") and "SYNTAX_ERROR" in body
    req = urllib.request.Request(base + "/", data=b"SELECT 1 AS x FORMAT JSONEachRow SETTINGS max_threads = 1",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:  # FORMAT before SETTINGS: the body stays whole
        assert json.loads(r.read()) == {"x": 1} and r.headers["X-ClickHouse-Format"] == "JSONEachRow"
    req = urllib.request.Request(base + "/?param_x=5", data=b"SELECT {x:UInt8} * 2", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.read() == b"10\n" and r.headers["X-ClickHouse-Format"] == "TabSeparated"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_endpoint(port: int, data_dir: Path, log: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "chdb_http", "--port", str(port), "--data-dir", str(data_dir)],
                         stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                if r.read() == b"Ok.\n":
                    return p
        except OSError:
            if p.poll() is not None:
                break
            time.sleep(0.2)
    p.kill()
    raise AssertionError(f"endpoint did not start: {log.read_text()[-2000:]}")


def test_data_persists_across_an_endpoint_restart(tmp_path):
    port, data = _free_port(), tmp_path / "ch"
    p = _start_endpoint(port, data, tmp_path / "ch.log")
    try:
        c = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        c.command("CREATE DATABASE IF NOT EXISTS movierecs")
        c.command("CREATE TABLE movierecs.p (a UInt32) ENGINE = MergeTree ORDER BY a")
        c.insert("movierecs.p", [[i] for i in range(1000)], column_names=["a"])
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    p = _start_endpoint(port, data, tmp_path / "ch.log")
    try:
        c = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        assert c.command("SELECT count() FROM movierecs.p") == 1000
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0


def test_set_lasts_for_its_session_only(endpoint):
    a = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1], autogenerate_session_id=True)
    b = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1], autogenerate_session_id=True)
    none = clickhouse_connect.get_client(host=endpoint[0], port=endpoint[1], autogenerate_session_id=False)
    default = none.command("SELECT getSetting('max_block_size')")
    a.command("SET max_block_size = 777")
    assert a.command("SELECT getSetting('max_block_size')") == 777
    assert b.command("SELECT getSetting('max_block_size')") == default
    assert none.command("SELECT getSetting('max_block_size')") == default
    none.command("SET max_block_size = 555")  # no session: lasts for that request only, as on a server
    assert none.command("SELECT getSetting('max_block_size')") == default
    with pytest.raises(DatabaseError, match="115|UNKNOWN_SETTING"):
        a.command("SET no_such_setting_here = 1")
    assert a.command("SELECT getSetting('max_block_size')") == 777
