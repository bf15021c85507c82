"""Unit tests of the consumer's logic with a fake ClickHouse and a fake serving state:
decoding, dead letters, one batched insert per store, idempotency, failing loudly when a
store is down, and both stores agreeing after a failure between the two writes."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from movierecs_core.consumer import decode_event, store as store_in
from movierecs_core.stores import Unavailable, postgres
from movierecs_core.stores.clickhouse import DEAD_LETTER_COLUMNS as DEAD_COLUMNS, LIKE_COLUMNS


def b64(s: str | bytes) -> str:
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def like(event_id: str, user: int = 5, movie: int = 7) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "movie_id": movie, "type": "like", "ts": "2026-11-27T10:00:00Z"}


def kafka_event(values: list[Any], source: str = "SelfManagedKafka") -> dict[str, Any]:
    recs = []
    for i, v in enumerate(values):
        value = v if isinstance(v, str) and v.startswith("raw:") else None
        recs.append(
            {
                "topic": "interactions",
                "partition": i % 2,
                "offset": i,
                "timestamp": 0,
                "timestampType": "CREATE_TIME",
                "key": b64("5"),
                "value": value[4:] if value else b64(json.dumps(v)),
                "headers": [],
            }
        )
    return {"eventSource": source, "bootstrapServers": "127.0.0.1:19092", "records": {"interactions-0": recs}}


class FakeClickHouse:
    """Records queries/inserts; ``stored`` holds (user_id, event_id) pairs already in likes."""

    def __init__(self, stored: set[tuple[int, str]] | None = None, fail: bool = False):
        self.stored = set(stored or ())
        self.fail = fail
        self.inserts: list[tuple[str, list, list]] = []
        self.queries: list[tuple[str, dict]] = []

    def query(self, sql: str, parameters: dict | None = None):
        if self.fail:
            raise ConnectionError("ClickHouse down")
        self.queries.append((sql, parameters or {}))
        users, ids = set(parameters["users"]), set(parameters["ids"])
        rows = [(u, e) for u, e in self.stored if u in users and e in ids]
        return type("R", (), {"result_rows": rows})()

    def insert(self, table: str, rows: list, column_names: list):
        if self.fail:
            raise ConnectionError("ClickHouse down")
        self.inserts.append((table, rows, column_names))
        if table == "likes":
            self.stored |= {(r[1], r[0]) for r in rows}

class FakeServingState:
    """The serving state's statements (stores.postgres): the tombstone read and the consumer's
    transaction (shared locks, tombstones, one insert); ``rows`` holds (user_id, event_id, movie_id)."""

    def __init__(self, fail: bool = False, deleted: dict[int, datetime] | None = None):
        self.rows: set[tuple[int, str, int]] = set()
        self.kinds: dict[tuple[int, str], str] = {}
        self.fail = fail
        self.deleted = dict(deleted or {})
        self.statements = 0
        self.locked: list[int] = []
        #: called inside the transaction after the locks: a deletion committed just before them
        self.before_tombstones = None

    def run(self, sql: str, **p):
        if sql == postgres._TOMBSTONES_SQL:
            return [(u, self.deleted[u]) for u in p["u"] if u in self.deleted]
        if sql == postgres._LOCK_SHARED_SQL:
            self.locked = list(p["u"])
            if self.before_tombstones:
                self.before_tombstones(self)
            return [[len(p["u"])]]
        assert sql == postgres._INSERT_EVENTS_SQL, sql
        u, e, m, k, t = p["u"], p["e"], p["m"], p["k"], p["t"]
        self.statements += 1
        assert set(k) <= {"like", "unlike", "not_interested"} and all("T" in ts for ts in t)
        keys = {(r[0], r[1]) for r in self.rows}
        new = [(uu, ee, mm) for uu, ee, mm in zip(u, e, m) if (uu, ee) not in keys]
        self.rows |= set(new)
        self.kinds |= {(uu, ee): kk for uu, ee, kk in zip(u, e, k)}
        return [[1] for _ in new]

    def transaction(self, body):
        """``fail``: PostgreSQL goes down after the tombstone read (between the two stores' writes)."""
        if self.fail:
            raise Unavailable("the movie database is unavailable (ConnectionRefusedError); retry shortly")
        return body(lambda sql, **p: self.run(sql, **p))


def store(ch, decoded, state: FakeServingState | None = None):
    return store_in(ch, state if state is not None else FakeServingState(), decoded)


def test_valid_records_go_in_one_insert():
    ch = FakeClickHouse()
    result = store(ch, decode_event(kafka_event([like(f"e{i}", user=i + 1) for i in range(50)])))
    assert result.inserted == 50 and result.dead_letters == 0
    assert [t for t, _, _ in ch.inserts] == ["likes"]
    table, rows, cols = ch.inserts[0]
    assert cols == LIKE_COLUMNS and len(rows) == 50


def test_existing_and_in_batch_duplicates_are_skipped():
    ch = FakeClickHouse(stored={(5, "old")})
    result = store(ch, decode_event(kafka_event([like("old"), like("new"), like("new")])))
    assert (result.inserted, result.already_stored, result.duplicates_in_batch) == (1, 1, 1)
    assert [r[0] for r in ch.inserts[0][1]] == ["new"]
    # the lookup is parametrized (no ids in the SQL text)
    sql, params = ch.queries[0]
    assert "{ids:Array(String)}" in sql and params["ids"] == ["new", "old"]
    # replaying the same batch inserts nothing
    again = store(ch, decode_event(kafka_event([like("old"), like("new")])))
    assert again.inserted == 0 and len(ch.inserts) == 1


def test_bad_records_become_dead_letters_without_failing_the_batch():
    values = [like("ok"), "raw:" + b64("not json"), "raw:%%%", {"type": "like", "user_id": -1}, like("ok2") | {"type": "view"}]
    ch = FakeClickHouse()
    result = store(ch, decode_event(kafka_event(values)))
    assert result.inserted == 1 and result.dead_letters == 4
    dead = [x for x in ch.inserts if x[0] == "dead_letters"][0]
    assert dead[2] == DEAD_COLUMNS
    reasons = [r[6] for r in dead[1]]
    assert any("undecodable" in r for r in reasons)
    assert any("invalid event" in r and "type" in r for r in reasons)
    values_text = [r[5] for r in dead[1]]
    assert "not json" in values_text


def test_clickhouse_down_raises_so_the_batch_is_retried():
    ch = FakeClickHouse(fail=True)
    with pytest.raises(ConnectionError):
        store(ch, decode_event(kafka_event([like("a")])))


def test_msk_event_shape_is_decoded_too():
    result = decode_event(kafka_event([like("m1")], source="aws:kafka"))
    assert [e.event_id for e in result.likes] == ["m1"]


def test_every_valid_like_reaches_the_serving_state_in_one_statement():
    ch, state = FakeClickHouse(stored={(5, "old")}), FakeServingState()
    result = store(ch, decode_event(kafka_event([like("old"), like("new", movie=8), like("new", movie=8)])), state)
    assert state.statements == 1 and state.rows == {(5, "old", 7), (5, "new", 8)}
    assert result.serving_inserted == 2 and result.inserted == 1


def test_a_failure_between_the_two_writes_is_retried_until_both_agree():
    """ClickHouse takes the batch, PostgreSQL fails: the invocation fails (the mapping retries the
    batch); the retry finds the likes in ClickHouse and still writes them to PostgreSQL, once."""
    ch, state = FakeClickHouse(), FakeServingState(fail=True)
    batch = kafka_event([like(f"e{i}", user=i + 1, movie=10 + i) for i in range(20)])
    with pytest.raises(Unavailable):
        store(ch, decode_event(batch), state)
    assert len(ch.stored) == 20 and state.rows == set()
    state.fail = False
    retried = store(ch, decode_event(batch), state)
    assert (retried.inserted, retried.already_stored, retried.serving_inserted) == (0, 20, 20)
    assert {(u, e) for u, e, _ in state.rows} == ch.stored
    again = store(ch, decode_event(batch), state)  # a third delivery changes neither store
    assert again.serving_inserted == 0 and len(ch.inserts) == 1 and len(state.rows) == 20


# -- feedback types and forgotten users (issue 12) -------------------------------------------
def kafka_event_at(values: list[dict], timestamps_ms: list[int]) -> dict[str, Any]:
    ev = kafka_event(values)
    for rec, ms in zip(ev["records"]["interactions-0"], timestamps_ms):
        rec["timestamp"] = ms
    return ev


def test_every_feedback_type_is_stored_with_its_type_in_both_stores():
    ch, state = FakeClickHouse(), FakeServingState()
    values = [like("l1"), like("u1") | {"type": "unlike"}, like("n1", movie=8) | {"type": "not_interested"}]
    result = store(ch, decode_event(kafka_event(values)), state)
    assert result.inserted == 3 and result.dead_letters == 0
    _, rows, cols = ch.inserts[0]
    assert [r[cols.index("type")] for r in rows] == ["like", "unlike", "not_interested"]
    assert state.kinds == {(5, "l1"): "like", (5, "u1"): "unlike", (5, "n1"): "not_interested"}


def test_an_unknown_type_is_a_dead_letter_never_a_like():
    ch, state = FakeClickHouse(), FakeServingState()
    result = store(ch, decode_event(kafka_event([like("d1") | {"type": "dislike"}])), state)
    assert result.inserted == 0 and result.dead_letters == 1 and state.rows == set()
    assert not [x for x in ch.inserts if x[0] == "likes"]


def test_events_produced_before_a_users_deletion_are_stored_nowhere():
    deleted = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    ms = int(deleted.timestamp() * 1000)
    state = FakeServingState(deleted={5: deleted})
    ch = FakeClickHouse()
    values = [like("old", user=5), like("new", user=5, movie=9), like("other", user=6)]
    result = store(ch, decode_event(kafka_event_at(values, [ms - 1000, ms + 1000, ms - 1000])), state)
    assert {(u, e) for u, e, _ in state.rows} == {(5, "new"), (6, "other")}
    assert {r[0] for r in ch.inserts[0][1]} == {"new", "other"} and result.forgotten == 1


def test_a_deletion_between_the_two_checks_is_undone_in_clickhouse_too():
    """The tombstone read before ClickHouse found nothing; the deletion committed before the
    consumer's locked transaction: PostgreSQL refuses the event and ClickHouse deletes it again."""
    deleted = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    ms = int(deleted.timestamp() * 1000)
    state, ch = FakeServingState(), FakeClickHouse()
    state.before_tombstones = lambda s: s.deleted.update({5: deleted})
    deletes: list[tuple] = []
    ch.command = lambda sql, parameters=None: deletes.append((sql, parameters))
    result = store(ch, decode_event(kafka_event_at([like("race", user=5)], [ms - 10])), state)
    assert state.rows == set() and result.forgotten == 1
    assert state.locked == [5]
    (sql, params), = deletes
    assert "DELETE" in sql and "{ids:Array(String)}" in sql and params == {"u": 5, "ids": ["race"]}
