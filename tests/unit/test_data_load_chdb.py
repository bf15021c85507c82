"""Ratings into ClickHouse (in-process chDB): idempotent, and an interrupted load resumes exactly."""
from __future__ import annotations

import pytest

from movierecs_core.stores import clickhouse
from movierecs_training import data, load


@pytest.fixture()
def ch(tmp_path):
    client = clickhouse.connect(f"chdb://{tmp_path / 'ch'}")
    clickhouse.create_tables(client, "mltest")
    yield client
    client.close()


def test_loading_twice_changes_nothing_and_a_partial_load_resumes(ch):
    ratings = data.load_dataset("ml-100k").ratings
    # an "interrupted" earlier run: a part of one chunk and one whole chunk are already there
    first = ratings.sort_values(["user_id", "movie_id"]).iloc[:30_000]
    load.load_clickhouse(ch, first.iloc[:25_000], "mltest", chunk_rows=20_000, progress=False)
    res = load.load_clickhouse(ch, ratings, "mltest", chunk_rows=20_000, progress=False)
    assert res["ratings_inserted"] == 75_000 and res["ratings_skipped"] == 25_000
    assert load.clickhouse_counts(ch, "mltest") == {"ratings": 100_000}
    assert int(ch.command("SELECT count() FROM mltest.ratings")) == 100_000  # no duplicate rows either
    again = load.load_clickhouse(ch, ratings, "mltest", chunk_rows=20_000, progress=False)
    assert again == {"ratings_inserted": 0, "ratings_skipped": 100_000}
    row = ch.query("SELECT rating, toUnixTimestamp(ts) FROM mltest.ratings WHERE user_id = 196 AND movie_id = 242").result_rows
    assert row == [(3, 881250949)]


def test_identifiers_are_checked():
    with pytest.raises(ValueError):
        clickhouse.ident("movierecs; DROP TABLE x")
