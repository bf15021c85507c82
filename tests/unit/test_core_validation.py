"""Unit tests: id/bounded-int parsing and the like event (request side and Kafka side)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from movierecs_core.errors import ApiError
from movierecs_core.events import InvalidEvent, format_ts, like_from_message, like_from_request, parse_ts
from movierecs_core.validation import MAX_ID, parse_bounded, parse_id


@pytest.mark.parametrize("raw,expected", [("1", 1), ("42", 42), (" 7 ", 7), (5, 5), (str(MAX_ID), MAX_ID)])
def test_parse_id_accepts_positive_ints(raw, expected):
    assert parse_id("user_id", raw) == expected


@pytest.mark.parametrize("raw", [None, "", "0", "-3", "abc", "1.5", "1e3", True, 0, -1, str(MAX_ID + 1), "9" * 30, [],
                                 "\uff11", "\u0661\u0662", "1\uff10"])  # fullwidth, Arabic-Indic digits
def test_parse_id_rejects_with_400_naming_the_field(raw):
    with pytest.raises(ApiError) as e:
        parse_id("user_id", raw)
    assert e.value.status == 400
    assert "user_id" in e.value.message


def test_parse_bounded_default_and_range():
    assert parse_bounded("k", None, 1, 100, 10) == 10
    assert parse_bounded("k", "100", 1, 100, 10) == 100
    for bad in ["0", "101", "-1", "x", "", "1.0", "\uff15", "\u0665"]:
        with pytest.raises(ApiError) as e:
            parse_bounded("k", bad, 1, 100, 10)
        assert e.value.status == 400 and "'k'" in e.value.message


def test_like_from_request_fills_event_id_and_ts():
    now = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
    ev = like_from_request({"user_id": 3, "movie_id": 9}, now=now)
    assert ev.user_id == 3 and ev.movie_id == 9 and ev.ts == now
    assert len(ev.event_id) == 32 and int(ev.event_id, 16) >= 0
    other = like_from_request({"user_id": 3, "movie_id": 9}, now=now)
    assert other.event_id != ev.event_id


def test_like_keeps_given_event_id_and_ts_and_serializes_to_contract():
    ev = like_from_request({"user_id": 3, "movie_id": 9, "event_id": "abc-1", "ts": "2026-11-27T10:00:00+02:00"})
    msg = json.loads(ev.to_bytes())
    assert msg == {"event_id": "abc-1", "user_id": 3, "movie_id": 9, "type": "like", "ts": "2026-11-27T08:00:00.000Z"}
    assert ev.key_bytes() == b"3"
    assert like_from_message(msg) == ev


@pytest.mark.parametrize(
    "payload,word",
    [
        ([], "JSON object"),
        ({"movie_id": 1}, "user_id"),
        ({"user_id": 1}, "movie_id"),
        ({"user_id": "1", "movie_id": 1}, "user_id"),
        ({"user_id": 1.5, "movie_id": 1}, "user_id"),
        ({"user_id": True, "movie_id": 1}, "user_id"),
        ({"user_id": 1, "movie_id": -4}, "movie_id"),
        ({"user_id": 1, "movie_id": 2, "event_id": "x" * 65}, "64"),
        ({"user_id": 1, "movie_id": 2, "event_id": ""}, "event_id"),
        ({"user_id": 1, "movie_id": 2, "event_id": 5}, "event_id"),
        ({"user_id": 1, "movie_id": 2, "ts": "yesterday"}, "ts"),
        ({"user_id": 1, "movie_id": 2, "ts": 1700000000}, "ts"),
        ({"user_id": 1, "movie_id": 2, "ts": "1900-01-01T00:00:00Z"}, "range"),
    ],
)
def test_like_from_request_rejects_clearly(payload, word):
    with pytest.raises(InvalidEvent) as e:
        like_from_request(payload)
    assert word in str(e.value)


def test_like_from_message_requires_type_and_event_id():
    base = {"event_id": "e", "user_id": 1, "movie_id": 2, "type": "like", "ts": "2026-11-27T10:00:00Z"}
    assert like_from_message(base).event_id == "e"
    for broken in [{**base, "type": "rating"}, {k: v for k, v in base.items() if k != "event_id"}, "text", None]:
        with pytest.raises(InvalidEvent):
            like_from_message(broken)


def test_ts_round_trip_millis():
    ts = parse_ts("2026-11-27T10:00:00.123456Z")
    assert format_ts(ts) == "2026-11-27T10:00:00.123Z"
    assert parse_ts("2026-11-27T10:00:00").tzinfo is not None


@pytest.mark.parametrize("query,word", [
    ({"include_genres": "Cartoon"}, "unknown genre"),
    ({"exclude_genres": "Comedy,"}, "unknown genre"),
    ({"year_min": "2000", "year_max": "1990"}, "year_min"),
    ({"year_min": "\uff11\uff19\uff19\uff10"}, "year_min"),
    ({"include_genres": "Drama", "exclude_genres": "drama"}, "both included and excluded"),
    ({"exclude": ",".join(str(i) for i in range(1, 102))}, "at most 100"),
    ({"exclude": "1,x"}, "exclude"),
])
def test_filters_refuse_with_400_saying_what_is_wrong(query, word):
    from movierecs_core.filters import from_query

    with pytest.raises(ApiError) as e:
        from_query(query.get)
    assert e.value.status == 400 and word in e.value.message


def test_filters_parse_case_insensitively_and_default_to_nothing():
    from movierecs_core.filters import from_query

    assert not from_query({}.get).active
    f = from_query({"include_genres": "sci-fi, Film-Noir", "year_max": "1999", "exclude": "3,4"}.get)
    assert f.include_genres == {"Sci-Fi", "Film-Noir"} and f.year_max == 1999 and f.exclude == {3, 4} and f.active
