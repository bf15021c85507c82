"""Unit tests of the read side (recommendations, movies, similar, likes) over a real tiny
model artifact, a fake model store, a fake serving state and a fake catalogue."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from movierecs_core import service
from movierecs_core.catalog import Catalog
from movierecs_core.errors import ApiError
from movierecs_core.stores import Unavailable, postgres
from movierecs_serving import ModelHolder, write_artifact

V1 = "20261127T000000Z-00000001"
V2 = "20261127T010000Z-00000002"
ITEMS = list(range(10, 30))  # movie ids 10..29


def make_artifact(tmp: Path, version: str, seed: int = 0, data: dict | None = None) -> Path:
    rng = np.random.default_rng(seed)
    users = np.array([1, 2])
    seen = {0: [0, 1, 2], 1: [3]}  # user 1 rated movies 10,11,12; user 2 rated 13
    indptr = np.cumsum([0] + [len(seen[u]) for u in range(len(users))])
    indices = np.concatenate([seen[u] for u in range(len(users))])
    return write_artifact(
        tmp,
        user_factors=rng.normal(size=(2, 4)),
        item_factors=rng.normal(size=(len(ITEMS), 4)),
        user_ids=users,
        item_ids=np.array(ITEMS),
        popular=np.arange(len(ITEMS)),
        popular_scores=np.linspace(1, 0, len(ITEMS)),
        seen_indptr=indptr,
        seen_indices=indices,
        seen_data=np.ones(len(indices)),
        hyperparameters={"alpha": 4.0, "regularization": 1.0},
        data=data or {},
        version=version,
    )


class FakeStore:
    """The part of ModelStore the holder uses, over local folders."""

    def __init__(self, folders: dict[str, Path], current: str | None):
        self.folders, self.pointer, self.pointer_reads = folders, current, 0

    def current_version(self) -> str | None:
        self.pointer_reads += 1
        return self.pointer

    def load(self, version: str, cache_dir: str):
        from movierecs_serving import ModelArtifact

        return ModelArtifact.load(self.folders[version])


class FakeDb:
    def __init__(self, rows: dict[int, tuple]):
        self.rows, self.calls = rows, 0

    def run(self, sql: str, ids: list[int]):
        self.calls += 1
        return [self.rows[i] for i in ids if i in self.rows]


class FakeState:
    """The serving state's statements (stores.postgres) answered from in-memory lists, with the
    SQL's meaning: per (user, movie) the latest event (by ts, then by the order stored) wins."""

    def __init__(self):
        # (event_id, user, movie, ts) likes, or (event_id, user, movie, ts, kind) any feedback
        self.likes: list[tuple] = []
        self.ratings: list[tuple[int, int]] = []  # (user, movie)
        self.deleted: dict[int, datetime] = {}
        self.hidden_movies: set[int] = set()  # hidden by the admin
        self.added: list[int] = []  # added through the API
        self.sqls: list[str] = []
        self.down = False

    def run(self, sql: str, u: int, n: int | None = None):
        if self.down:
            raise Unavailable("the movie database is unavailable (ConnectionRefusedError); retry shortly")
        self.sqls.append(sql)
        events = [(x[0], x[1], x[2], x[3], x[4] if len(x) > 4 else "like", seq) for seq, x in enumerate(self.likes)
                  if x[1] == u]
        latest: dict[int, tuple] = {}
        for ev in sorted(events, key=lambda x: (x[3], x[5])):
            latest[ev[2]] = ev
        if sql == postgres._HIDDEN_SQL:
            return [[sorted({ev[2] for ev in events if ev[4] == "not_interested"}), sorted(self.hidden_movies),
                     [m for m in self.added if m not in self.hidden_movies]]]
        if sql == postgres._USER_LIKES_SQL:
            rows = sorted((ev for ev in latest.values() if ev[4] == "like"), key=lambda x: (x[3], x[5]), reverse=True)
            return [(e, m, ts) for e, _, m, ts, _, _ in rows][:n]
        liked = [ev[2] for ev in sorted((ev for ev in latest.values() if ev[4] == "like"),
                                        key=lambda x: (-x[3].timestamp(), x[2]))]  # the SQL's ORDER BY
        dropped = sorted(m for m, ev in latest.items() if ev[4] != "like")
        hidden = sorted({ev[2] for ev in events if ev[4] == "not_interested"})
        state = [liked, dropped, hidden, self.deleted.get(u), sorted(self.hidden_movies),
                 [m for m in self.added if m not in self.hidden_movies]]
        if sql == postgres._HISTORY_SQL:
            return [state + [[m for uu, m in self.ratings if uu == u] or None]]
        assert sql == postgres._LIKED_SQL, sql
        return [state]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def env(tmp_path):
    folders = {V1: make_artifact(tmp_path, V1, 0), V2: make_artifact(tmp_path, V2, 1)}
    store = FakeStore(folders, V1)
    clock = Clock()
    holder = ModelHolder(lambda: store, str(tmp_path / "cache"), check_seconds=2.0, clock=clock)
    rows = {m: (m, f"Movie {m}", 1990 + m % 10, ["Drama"]) for m in ITEMS}
    ch = FakeState()
    reads = service.Reads(models=holder, catalog=Catalog(FakeDb(rows)), state=ch)
    return reads, store, clock, ch


def ids(resp):
    return [i["movie_id"] for i in resp["items"]]


def test_personal_excludes_training_items_and_new_ratings_and_likes(env):
    reads, _, _, ch = env
    ch.ratings.append((1, 20))
    ch.likes.append(("e1", 1, 21, datetime(2026, 11, 27, tzinfo=timezone.utc)))
    r = service.recommendations(reads, 1, 100)
    assert r["strategy"] == "personal" and r["model_version"] == V1 and r["k"] == 100
    got = ids(r)
    assert len(got) == len(set(got))
    assert not set(got) & {10, 11, 12, 20, 21}
    assert len(got) == len(ITEMS) - 5
    assert set(r["items"][0]) == {"movie_id", "title", "year", "genres", "score", "reasons"}


def test_a_model_holding_every_rating_reads_only_likes(tmp_path):
    v = "20261128T000000Z-00000003"
    folder = make_artifact(tmp_path, v, 0, data={"seen_has_all_ratings": True})
    holder = ModelHolder(lambda: FakeStore({v: folder}, v), str(tmp_path / "cache"))
    ch = FakeState()
    ch.likes.append(("e1", 1, 21, datetime(2026, 11, 27, tzinfo=timezone.utc)))
    reads = service.Reads(models=holder, catalog=Catalog(FakeDb({m: (m, f"Movie {m}", 2000, []) for m in ITEMS})),
                          state=ch)
    got = ids(service.recommendations(reads, 1, 100))
    assert ch.sqls[-1] == postgres._LIKED_SQL
    assert not set(got) & {10, 11, 12, 21}  # training items (the ratings) and the like


def test_history_lists_each_liked_movie_once_newest_first():
    from movierecs_core.stores.postgres import user_history

    ch = FakeState()
    ch.likes += [("a", 5, 10, datetime(2026, 1, 3, tzinfo=timezone.utc)),
                 ("b", 5, 11, datetime(2026, 1, 2, tzinfo=timezone.utc)),
                 ("c", 5, 10, datetime(2026, 1, 1, tzinfo=timezone.utc)),
                 ("d", 5, 12, datetime(2026, 1, 4, tzinfo=timezone.utc))]
    ch.ratings += [(5, 13), (6, 14)]
    h = user_history(ch, 5)
    assert h.liked == [12, 10, 11] and h.rated == {13}
    assert user_history(ch, 5, ratings=False).rated == set()


def test_new_user_with_likes_gets_fold_in_without_liked_movies(env):
    reads, _, _, ch = env
    for i, m in enumerate([14, 15, 16]):
        ch.likes.append((f"x{i}", 999, m, datetime(2026, 11, 27, 0, i, tzinfo=timezone.utc)))
    r = service.recommendations(reads, 999, 5)
    assert r["strategy"] == "fold_in" and len(r["items"]) == 5
    assert not set(ids(r)) & {14, 15, 16}


def test_user_without_signal_gets_popular(env):
    reads, *_ = env
    r = service.recommendations(reads, 12345, 3)
    assert r["strategy"] == "popular" and ids(r) == [10, 11, 12]


def test_model_pointer_is_rechecked_at_most_every_two_seconds(env):
    reads, store, clock, _ = env
    service.recommendations(reads, 5, 1)
    reads_before = store.pointer_reads
    store.pointer = V2
    clock.t = 1.0
    assert service.recommendations(reads, 5, 1)["model_version"] == V1
    assert store.pointer_reads == reads_before
    clock.t = 2.5
    assert service.recommendations(reads, 5, 1)["model_version"] == V2


def test_no_model_is_503(tmp_path):
    holder = ModelHolder(lambda: FakeStore({}, None), str(tmp_path))
    reads = service.Reads(models=holder, catalog=Catalog(FakeDb({})), state=FakeState())
    with pytest.raises(ApiError) as e:
        service.recommendations(reads, 1, 10)
    assert e.value.status == 503
    assert service.health(reads) == {"status": "ok", "model_version": None}


def test_serving_state_failure_is_503_not_500(env):
    reads, _, _, state = env
    state.down = True
    for call in (lambda: service.recommendations(reads, 1, 10), lambda: service.likes(reads, 1, 10)):
        with pytest.raises(ApiError) as e:
            call()
        assert e.value.status == 503 and "retry shortly" in e.value.message


def test_movie_and_similar(env):
    reads, *_ = env
    assert service.movie(reads, 10)["title"] == "Movie 10"
    with pytest.raises(ApiError) as e:
        service.movie(reads, 5000)
    assert e.value.status == 404
    s = service.similar(reads, 10, 4)
    assert len(s["items"]) == 4 and 10 not in ids(s) and len(set(ids(s))) == 4
    with pytest.raises(ApiError):
        service.similar(reads, 5000, 4)


def test_likes_newest_first_with_titles(env):
    reads, _, _, ch = env
    ch.likes += [("a", 7, 10, datetime(2026, 1, 1, tzinfo=timezone.utc)), ("b", 7, 11, datetime(2026, 1, 2, tzinfo=timezone.utc))]
    r = service.likes(reads, 7, 50)
    assert [i["movie_id"] for i in r["items"]] == [11, 10]
    assert r["items"][0]["title"] == "Movie 11" and r["items"][0]["ts"] == "2026-01-02T00:00:00.000Z"
    assert service.likes(reads, 7, 1)["items"][0]["movie_id"] == 11


def test_catalog_caches_rows():
    db = FakeDb({1: (1, "A", 2000, ["X"])})
    cat = Catalog(db)
    assert cat.get(1).title == "A" and cat.get(1).title == "A"
    assert db.calls == 1
    assert cat.get(2) is None and cat.get(2) is None
    assert db.calls == 3  # misses are asked again


def test_a_corrupt_new_version_keeps_the_old_model_serving(env):
    from movierecs_serving import ArtifactError

    reads, store, clock, _ = env
    assert service.recommendations(reads, 5, 1)["model_version"] == V1
    loads = []
    real_load = store.load

    def load(version, cache_dir):
        loads.append(version)
        if version == V2:
            raise ArtifactError("sha256 mismatch")
        return real_load(version, cache_dir)

    store.load = load
    store.pointer = V2
    clock.t = 3.0
    assert service.recommendations(reads, 5, 1)["model_version"] == V1
    clock.t = 6.0
    assert service.recommendations(reads, 5, 1)["model_version"] == V1
    assert loads == [V2]  # not re-downloaded every 2 s


def test_filters_apply_to_every_strategy_and_never_return_fewer_than_k_while_enough_match(env):
    from movierecs_core.controls import Controls
    from movierecs_core.filters import Filters

    reads, _, _, state = env
    # the fake catalogue: movie m has year 1990 + m % 10, genre Drama; make the even ones Comedy
    for m in ITEMS:
        if m % 2 == 0:
            reads.catalog._rows.pop(m, None)
    reads.catalog._db.rows.update({m: (m, f"Movie {m}", 1990 + m % 10, ["Comedy"]) for m in ITEMS if m % 2 == 0})
    state.likes.append(("f1", 999, 15, datetime(2026, 11, 27, tzinfo=timezone.utc)))
    no_comedy = Controls(Filters(exclude_genres=frozenset({"Comedy"})))
    for user, strategy in ((1, "personal"), (999, "fold_in"), (5000, "popular")):
        r = service.recommendations(reads, user, 5, no_comedy)
        assert r["strategy"] == strategy and len(r["items"]) == 5 and r["exhausted"] is False
        assert all(m % 2 == 1 for m in ids(r)), r
    # fewer match than k: all of them, and the answer says so
    r = service.recommendations(reads, 5000, 10, Controls(Filters(year_min=1999, exclude=frozenset({29}))))
    assert ids(r) == [19] and r["exhausted"] is True
    s = service.similar(reads, 10, 3, no_comedy)
    assert len(s["items"]) == 3 and all(m % 2 == 1 for m in ids(s)) and s["exhausted"] is False
    assert "exhausted" not in service.recommendations(reads, 5000, 3)  # unfiltered answers keep their shape


def test_pages_never_repeat_and_end_with_a_short_page(env):
    from movierecs_core.controls import Controls

    reads, _, _, state = env
    state.likes.append(("p1", 1, 25, datetime(2026, 11, 27, tzinfo=timezone.utc)))
    for diversity in (0.0, 0.7):
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            r = service.recommendations(reads, 1, 4, Controls(diversity=diversity, cursor=cursor))
            seen += ids(r)
            pages += 1
            cursor = r["next_cursor"]
            if cursor is None:
                break
        # 20 items minus 3 rated and 1 liked = 16: four full pages, then a short (empty) one
        assert len(seen) == len(set(seen)) == 16 and not set(seen) & {10, 11, 12, 25}, diversity
        assert pages == 5
    # at diversity 0 the pages are the ranking, cut in pieces
    first = service.recommendations(reads, 1, 8)
    p1 = service.recommendations(reads, 1, 4)
    p2 = service.recommendations(reads, 1, 4, Controls(cursor=p1["next_cursor"]))
    assert ids(p1) + ids(p2) == ids(first)
    # the same cursor gives the same page while the model does not change
    assert ids(service.recommendations(reads, 1, 4, Controls(cursor=p1["next_cursor"]))) == ids(p2)


def test_a_cursor_of_another_listing_or_model_or_a_forged_one_is_a_400_with_a_code(env):
    from movierecs_core import paging
    from movierecs_core.controls import Controls
    from movierecs_core.filters import Filters

    reads, store, clock, _ = env
    c = service.recommendations(reads, 1, 3)["next_cursor"]

    def code(user, controls, call=service.recommendations):
        with pytest.raises(ApiError) as e:
            call(reads, user, 3, controls)
        assert e.value.status == 400
        return e.value.body()["code"], e.value.message

    assert code(2, Controls(cursor=c))[0] == "cursor_mismatch"
    assert code(1, Controls(Filters(exclude_genres=frozenset({"Comedy"})), cursor=c))[0] == "cursor_mismatch"
    assert code(1, Controls(diversity=0.5, cursor=c))[0] == "cursor_mismatch"
    assert code(10, Controls(cursor=c), service.similar)[0] == "cursor_mismatch"
    # the exclude list may change between pages
    assert service.recommendations(reads, 1, 3, Controls(Filters(exclude=frozenset({13})), cursor=c))["items"]
    for forged in ("", "x", "!!!!", c[:-3], c + "A", "１" + c, "e" * 9000,
                   paging.encode(paging.Cursor(V1, "0", ("a",))),  # type: ignore[arg-type]
                   paging.encode(paging.Cursor(V1, "0", tuple(range(1, 1100))))):
        got, message = code(1, Controls(cursor=forged))
        assert got in ("cursor_malformed", "cursor_mismatch"), forged
    assert "leave 'cursor' out" in code(1, Controls(cursor="x"))[1]
    store.pointer = V2
    clock.t += 10
    got, message = code(1, Controls(cursor=c))
    assert got == "cursor_stale" and V1 in message and V2 in message


def test_diversity_zero_is_the_ranking_and_more_diversity_spreads_the_list(env):
    from movierecs_core.controls import Controls

    reads, *_ = env
    rec = reads.models.get()
    plain = service.recommendations(reads, 1, 5)
    assert ids(service.recommendations(reads, 1, 5, Controls(diversity=0.0))) == ids(plain)
    spread = service.recommendations(reads, 1, 5, Controls(diversity=1.0))
    assert len(ids(spread)) == 5 and ids(spread)[0] == ids(plain)[0]  # the first pick is the best one

    def mean_cosine(movies):
        V = rec._Yn[[rec._item_row[m] for m in movies]].astype(float)
        sims = V @ V.T
        n = len(movies)
        return (sims.sum() - n) / (n * (n - 1))

    assert mean_cosine(ids(spread)) < mean_cosine(ids(plain))


def test_reasons_are_history_movies_with_their_share_and_popular_says_so(env):
    reads, _, _, state = env
    state.likes.append(("r1", 999, 15, datetime(2026, 11, 27, tzinfo=timezone.utc)))
    state.likes.append(("r2", 999, 16, datetime(2026, 11, 28, tzinfo=timezone.utc)))
    folded = service.recommendations(reads, 999, 5)
    assert folded["strategy"] == "fold_in"
    for item in folded["items"]:
        assert 1 <= len(item["reasons"]) <= 2 or item["score"] <= 0
        for reason in item["reasons"]:
            assert reason["kind"] == "liked" and reason["movie_id"] in (15, 16) and 0 < reason["share"]
            assert reason["title"] == f"Movie {reason['movie_id']}"
    known = service.recommendations(reads, 1, 5)  # user 1 rated 10, 11, 12
    assert all(r["kind"] == "rated" and r["movie_id"] in (10, 11, 12) for i in known["items"] for r in i["reasons"])
    new = service.recommendations(reads, 5000, 3)
    assert all(i["reasons"] == [{"kind": "popular", "share": 1.0}] for i in new["items"])
    s = service.similar(reads, 10, 2)
    assert all(i["reasons"] == [{"kind": "similar", "movie_id": 10, "title": "Movie 10", "share": 1.0}] for i in s["items"])


def test_while_an_experiment_runs_each_user_gets_their_arms_version(env):
    from movierecs_core.experiments import Experiment

    reads, *_ = env
    exp = Experiment("exp-0123456789ab", V1, V2, 0.5, 100, 24.0, 0.05, "running", datetime(2026, 12, 3, tzinfo=timezone.utc))
    reads.experiment = lambda: exp
    seen = set()
    for user in range(1, 41):
        r = service.recommendations(reads, user, 3)
        assert r["arm"] == exp.arm(user) and r["experiment_id"] == exp.experiment_id
        assert r["model_version"] == (V2 if r["arm"] == "candidate" else V1)
        seen.add(r["arm"])
    assert seen == {"control", "candidate"}
    assert "arm" not in service.similar(reads, 10, 2)  # lists without a user are outside experiments
    reads.experiment = lambda: None
    assert "arm" not in service.recommendations(reads, 1, 3)
