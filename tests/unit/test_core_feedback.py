"""Unit tests of feedback types and forgetting a user (issue 12) with fakes: the event's
validation on both sides, the ingest routes refusing an unknown type without producing, the
read side's meaning of unlike / not_interested / a forgotten user, and the recommender's
zero-confidence drop."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from movierecs_core import service
from movierecs_core.catalog import Catalog
from movierecs_core.controls import Controls
from movierecs_core.errors import ApiError
from movierecs_core.events import (InvalidEvent, feedback_from_message, feedback_from_request, like_from_request)
from movierecs_core.filters import Filters
from movierecs_core.ingest import Ingest, accept_feedback, accept_like
from movierecs_core.stores.postgres import user_history
from movierecs_serving import ModelArtifact, Recommender
from test_core_service import ITEMS, V1, env, ids, make_artifact  # noqa: F401  (env is a fixture)

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- the event ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["like", "unlike", "not_interested"])
def test_feedback_types_round_trip_through_the_message(kind):
    ev = feedback_from_request({"user_id": 3, "movie_id": 9, "type": kind, "ts": "2026-11-27T10:00:00.250Z"})
    assert ev.type == kind and ev.to_message()["type"] == kind
    assert feedback_from_message(ev.to_message()) == ev


@pytest.mark.parametrize("body,word", [
    ({"user_id": 3, "movie_id": 9}, "required"),
    ({"user_id": 3, "movie_id": 9, "type": "dislike"}, "one of like, unlike, not_interested"),
    ({"user_id": 3, "movie_id": 9, "type": ["like"]}, "one of"),
    ({"user_id": 3, "movie_id": 9, "type": "LIKE"}, "one of"),
])
def test_feedback_needs_a_known_type(body, word):
    with pytest.raises(InvalidEvent) as e:
        feedback_from_request(body)
    assert word in str(e.value)


def test_post_likes_is_the_like_shorthand_and_refuses_any_other_type():
    assert like_from_request({"user_id": 3, "movie_id": 9}).type == "like"
    assert like_from_request({"user_id": 3, "movie_id": 9, "type": "like"}).type == "like"
    with pytest.raises(InvalidEvent, match="must be 'like' here"):
        like_from_request({"user_id": 3, "movie_id": 9, "type": "dislike"})
    with pytest.raises(InvalidEvent, match="must be 'like' here"):
        like_from_request({"user_id": 3, "movie_id": 9, "type": None})
    with pytest.raises(InvalidEvent, match="POST /feedback"):
        like_from_request({"user_id": 3, "movie_id": 9, "type": "unlike"})


def test_the_consumer_refuses_an_unknown_type():
    msg = {"event_id": "e", "user_id": 1, "movie_id": 2, "type": "dislike", "ts": "2026-11-27T10:00:00Z"}
    with pytest.raises(InvalidEvent):
        feedback_from_message(msg)


class Movies:
    def run(self, sql, ids):
        return [(i, f"Movie {i}", 2000, ["Drama"]) for i in ids if i < 100]


def test_ingest_answers_400_for_an_unknown_type_and_produces_nothing():
    sent = []
    ingest = Ingest(catalog=Catalog(Movies()), send=sent.append)
    for call, body in [(accept_like, {"user_id": 1, "movie_id": 2, "type": "dislike"}),
                       (accept_feedback, {"user_id": 1, "movie_id": 2, "type": "dislike"}),
                       (accept_feedback, {"user_id": 1, "movie_id": 2})]:
        with pytest.raises(ApiError) as e:
            call(ingest, body)
        assert e.value.status == 400
    assert sent == []
    with pytest.raises(ApiError) as e:
        accept_feedback(ingest, {"user_id": 1, "movie_id": 500, "type": "unlike"})
    assert e.value.status == 404 and sent == []
    out = accept_feedback(ingest, {"user_id": 1, "movie_id": 2, "type": "not_interested", "event_id": "n-1"})
    assert out == {"event_id": "n-1"} and [(s.type, s.event_id) for s in sent] == [("not_interested", "n-1")]


# -- the read side ----------------------------------------------------------------------------
def test_the_latest_like_or_unlike_decides_and_not_interested_hides_for_good(env):
    reads, _, _, st = env
    st.likes += [("a", 7, 14, at(1)), ("b", 7, 14, at(2), "unlike"),          # liked, then unliked
                 ("c", 7, 15, at(1), "unlike"), ("d", 7, 15, at(3)),          # unliked, then liked again
                 ("e", 7, 16, at(4), "not_interested"),
                 ("f", 7, 17, at(5), "not_interested"), ("g", 7, 17, at(6))]  # later liked: liked, still hidden
    h = user_history(st, 7)
    assert h.liked == [17, 15] and h.dropped == {14, 16} and h.hidden == {16, 17}
    assert [i["movie_id"] for i in service.likes(reads, 7, 50)["items"]] == [17, 15]


def test_an_unliked_movie_leaves_the_fold_in(env):
    reads, _, _, st = env
    st.likes += [("a", 900, 14, at(1)), ("b", 900, 15, at(2)), ("c", 900, 16, at(3))]
    before = service.recommendations(reads, 900, 20)
    st.likes.append(("d", 900, 16, at(4), "unlike"))
    after = service.recommendations(reads, 900, 20)
    assert before["strategy"] == after["strategy"] == "fold_in"
    assert 16 not in ids(before) and 16 in ids(after)  # no longer liked: may be recommended again
    assert {r["movie_id"] for i in after["items"] for r in i["reasons"]} <= {14, 15}
    expect = Recommender(reads.models.get().artifact).recommend(900, 20, liked=[15, 14])
    assert ids(after) == [m for m, _ in expect.items][:len(ids(after))]


def test_not_interested_is_never_listed_again_across_pages_and_filters(env):
    reads, _, _, st = env
    first = service.recommendations(reads, 1, 5)
    hidden = ids(first)[:2]
    for i, m in enumerate(hidden):
        st.likes.append((f"n{i}", 1, m, at(i), "not_interested"))
    for controls in [Controls(), Controls(Filters(include_genres=frozenset({"Drama"}))), Controls(diversity=0.5)]:
        cursor, seen = None, []
        while True:
            r = service.recommendations(reads, 1, 4, Controls(controls.filters, controls.diversity, cursor))
            seen += ids(r)
            cursor = r["next_cursor"]
            if cursor is None:
                break
        assert seen and not set(seen) & set(hidden)
        assert len(seen) == len(ITEMS) - 3 - 2  # every movie but the 3 training items and the 2 hidden


def test_a_model_users_training_item_taken_back_is_solved_out_of_their_vector(env):
    reads, _, _, st = env
    rec = reads.models.get()
    plain = service.recommendations(reads, 1, 10)
    st.likes.append(("u", 1, 10, at(1), "unlike"))  # 10 is one of user 1's training items
    dropped = service.recommendations(reads, 1, 10)
    assert dropped["strategy"] == "personal" and 10 not in ids(dropped)  # training items stay excluded
    expect = rec.recommend(1, 10, drop=[10])
    assert [i["score"] for i in dropped["items"]] == [round(float(s), 6) for _, s in expect.items]
    assert [i["score"] for i in plain["items"]] != [i["score"] for i in dropped["items"]]


def test_a_forgotten_user_is_served_as_new_although_the_model_knows_them(env):
    reads, _, _, st = env
    assert service.recommendations(reads, 1, 5)["strategy"] == "personal"
    st.deleted[1] = at(0)
    assert service.recommendations(reads, 1, 5)["strategy"] == "popular"
    st.likes.append(("back", 1, 20, at(1)))  # a like after the deletion: a new user's fold-in
    r = service.recommendations(reads, 1, 5)
    assert r["strategy"] == "fold_in" and 20 not in ids(r)


# -- the recommender ----------------------------------------------------------------------------
def test_drop_solves_the_vector_without_the_dropped_items(tmp_path):
    rec = Recommender(ModelArtifact.load(make_artifact(tmp_path, V1, 3)))
    full = rec.recommend(1, 5)
    keep_rows = np.asarray(rec._rows([11, 12]), dtype=np.int32)
    vec = rec.fold_in_vector(keep_rows, np.ones(2, np.float32))
    scores = rec.scores(vec)
    got = rec.recommend(1, 5, drop=[10])
    assert [round(s, 5) for _, s in got.items] == [round(float(scores[rec._item_row[m]]), 5) for m, _ in got.items]
    assert got.items != full.items and sorted(got.basis.rows.tolist()) == sorted(keep_rows.tolist())
    assert rec.recommend(1, 5, drop=[29]).items == full.items  # not in the user's items: nothing to solve
    assert rec.recommend(1, 5, forget=True).strategy == "popular"


def test_similar_leaves_out_what_the_named_user_is_not_interested_in(env):
    reads, _, _, st = env
    plain = ids(service.similar(reads, 14, 5))
    st.likes += [("n1", 7, plain[0], at(1), "not_interested"), ("n2", 7, plain[2], at(2), "not_interested")]
    mine = ids(service.similar(reads, 14, 5, user_id=7))
    assert len(mine) == 5 and not {plain[0], plain[2]} & set(mine)
    assert ids(service.similar(reads, 14, 5, user_id=8)) == plain  # another user: unchanged


# -- movies added through the API (part 3) ------------------------------------------------------
def _with_genres(reads, added: dict[int, tuple[str, ...]]):
    """Movies 10..19 are comedies, 20..29 dramas; ``added`` are catalogue rows no model knows."""
    from movierecs_core import new_items

    rows = reads.catalog._db.rows
    for m in ITEMS:
        rows[m] = (m, f"Movie {m}", 1995, ["Comedy"] if m < 20 else ["Drama"])
    for m, genres in added.items():
        rows[m] = (m, f"New {m}", 2026, list(genres))
    reads.catalog._rows.clear()
    new_items._cache.clear()
    new_items._cache["version"] = None


def test_an_added_movie_gets_its_genres_mean_vector_and_joins_similar_on_merit(env):
    reads, _, _, st = env
    _with_genres(reads, {50: ("Comedy",), 51: ("Drama",)})
    st.added = [50, 51]
    rec = reads.models.get()
    Y = rec.artifact.item_factors.astype(np.float64)
    comedy = Y[:10].mean(axis=0)
    unit = Y / np.linalg.norm(Y, axis=1)[:, None]
    full = service.similar(reads, 14, 21)
    got = {i["movie_id"]: i["score"] for i in full["items"]}
    assert {50, 51} <= set(got) and len(got) == 21
    assert got[50] == pytest.approx(float(unit[4] @ (comedy / np.linalg.norm(comedy))), abs=1e-5)
    assert [i["score"] for i in full["items"]] == sorted(got.values(), reverse=True)
    own = service.similar(reads, 50, 5)  # the added movie's own list, from its vector
    expect = np.argsort(-(unit @ (comedy / np.linalg.norm(comedy))))[:5]
    assert ids(own)[:5] == [ITEMS[j] for j in expect]
    st.hidden_movies.add(50)  # hidden by the admin: gone at once
    assert 50 not in ids(service.similar(reads, 14, 21)) and service.similar(reads, 50, 5)["items"]


def test_exploration_offers_a_matching_added_movie_in_the_last_slot_and_zero_disables_it(env):
    reads, _, _, st = env
    _with_genres(reads, {50: ("Comedy",), 51: ("Drama",)})
    st.added = [50, 51]
    for i, m in enumerate([10, 11, 12, 13]):
        st.likes.append((f"c{i}", 800, m, at(i)))
    plain = Controls()
    reads.exploration = 0.0
    base = service.recommendations(reads, 800, 10, plain)
    assert not {50, 51} & set(ids(base))
    reads.exploration = 0.1
    r = service.recommendations(reads, 800, 10, plain)
    rec = reads.models.get()
    vec = rec.recommend(800, 10, liked=[13, 12, 11, 10]).vector.astype(np.float64)
    Y = rec.artifact.item_factors.astype(np.float64)
    scores = {50: float(vec @ Y[:10].mean(axis=0)), 51: float(vec @ Y[10:].mean(axis=0))}
    bar = float(vec @ Y.mean(axis=0))
    best = max(scores, key=scores.get)
    assert scores[best] > bar  # this tiny model's comedy fan does prefer comedies to the average movie
    assert ids(r)[:9] == ids(base)[:9] and ids(r)[9] == best and r["items"][9]["reasons"] == [{"kind": "new", "share": 1.0}]
    st.hidden_movies.add(best)  # hidden by the admin: never offered
    assert best not in ids(service.recommendations(reads, 800, 10, plain))
    assert service.recommendations(reads, 2_000_000, 10)["strategy"] == "popular"  # no vector: no exploration
    assert not {50, 51} & set(ids(service.recommendations(reads, 2_000_000, 10)))


def test_new_movie_requests_are_checked():
    from movierecs_core.catalog_admin import parse_new_movie, patch_movie

    assert parse_new_movie({"title": " Arrival ", "year": 2016, "genres": ["sci-fi", "Drama", "drama"]}) == (
        "Arrival", 2016, ["Sci-Fi", "Drama"])
    assert parse_new_movie({"title": "x", "genres": ["Comedy"]})[1] is None
    for body, word in [({}, "title"), ({"title": "x", "genres": []}, "genres"), ({"title": "x", "genres": ["Cartoon"]}, "unknown"),
                       ({"title": "x", "genres": ["Comedy"], "year": 3000}, "year"), ([], "object"),
                       ({"title": "x" * 301, "genres": ["Comedy"]}, "301")]:
        with pytest.raises(ApiError) as e:
            parse_new_movie(body)
        assert e.value.status == 400 and word in e.value.message
    for body in [{}, {"hidden": "yes"}, {"hidden": True, "title": "x"}, None]:
        with pytest.raises(ApiError) as e:
            patch_movie(None, 5, body)
        assert e.value.status == 400


def test_a_transaction_reopens_a_connection_found_broken_at_begin(monkeypatch):
    """The database restarted since the last call: BEGIN fails, the connection is reopened once."""
    from movierecs_core.stores import postgres as pgs

    class Conn:
        def __init__(self, broken: bool):
            self.broken, self.ran = broken, []

        def run(self, sql, **kw):
            if self.broken:
                raise ConnectionResetError("reset")
            self.ran.append(sql)
            return [[1]]

        def prepare(self, sql):
            return type("S", (), {"run": lambda _s, **kw: self.run(sql, **kw)})()

        def close(self):
            pass

    conns = [Conn(broken=True), Conn(broken=False)]
    db = pgs.Postgres("postgresql://u@127.0.0.1:1/db")
    monkeypatch.setattr(db, "_connect", lambda: conns.pop(0))
    assert db.transaction(lambda run: run("SELECT 1")) == [[1]]
    assert not conns  # the broken one was dropped, a second one opened
    db._conn = Conn(broken=True)
    monkeypatch.setattr(db, "_connect", lambda: Conn(broken=True))
    with pytest.raises(pgs.Unavailable):
        db.transaction(lambda run: run("SELECT 1"))
