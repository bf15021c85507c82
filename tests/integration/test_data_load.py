"""MovieLens load against the real stack (PostgreSQL + the ClickHouse endpoint of .movierecs/endpoints.json).

ML-100K goes into a throwaway PostgreSQL schema and ClickHouse database (dropped afterwards),
so the shared stack's data cannot be touched. Loading twice must change nothing.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from movierecs_core.stores import clickhouse, postgres
from movierecs_training import data, load

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ROOT / ".movierecs" / "endpoints.json"


@pytest.fixture(scope="module")
def endpoints():
    if not ENDPOINTS.is_file():
        pytest.fail(f"{ENDPOINTS} is missing: run `make up` first (integration tests need the stack)")
    return json.loads(ENDPOINTS.read_text())


@pytest.fixture(scope="module")
def scratch(endpoints):
    name = "movierecs_it_" + secrets.token_hex(4)
    pg = postgres.connect(endpoints["postgres"])
    ch = clickhouse.connect(endpoints["clickhouse"])
    try:
        postgres.create_tables(pg, name)
        clickhouse.create_tables(ch, name)
        yield name, pg, ch
    finally:
        pg.run(f"DROP SCHEMA IF EXISTS {clickhouse.ident(name)} CASCADE")
        ch.command(f"DROP DATABASE IF EXISTS {clickhouse.ident(name)}")
        pg.close()
        ch.close()


def test_ml100k_loads_once_and_a_second_load_changes_nothing(endpoints, scratch):
    name, pg, ch = scratch
    ml = data.load_dataset("ml-100k")
    first = load.load_all(ml, endpoints["postgres"], endpoints["clickhouse"], schema=name, database=name, progress=False)
    assert first["movies_inserted"] == 1682 and first["users_inserted"] == 943 and first["ratings_inserted"] == 100_000
    assert first["postgres"] == {"movies": 1682, "users": 943} and first["clickhouse"] == {"ratings": 100_000}

    second = load.load_all(ml, endpoints["postgres"], endpoints["clickhouse"], schema=name, database=name, progress=False)
    assert second["movies_inserted"] == 0 and second["users_inserted"] == 0 and second["ratings_inserted"] == 0
    assert second["postgres"] == first["postgres"] and second["clickhouse"] == first["clickhouse"]
    assert int(ch.command(f"SELECT count() FROM {name}.ratings")) == 100_000

    title, year, genres = pg.run(f"SELECT title, year, genres FROM {name}.movies WHERE movie_id = 1")[0]
    assert (title, year, genres) == ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"])
    assert pg.run(f"SELECT gender, age, zip FROM {name}.users WHERE user_id = 1")[0] == ["M", 24, "85711"]
    row = ch.query(f"SELECT rating, toUnixTimestamp(ts) FROM {name}.ratings WHERE user_id = 196 AND movie_id = 242").result_rows
    assert row == [(3, 881250949)]
