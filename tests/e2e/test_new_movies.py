"""End to end (issue 12, part 3): movies added through POST /admin/movies on the running stack.

- the admin routes refuse a request without the key (or with a wrong one) and change nothing;
- an added movie is served at once (GET /movies/{id}), has a similar list of its own from its
  content vector, appears in the similar list of a movie of its genre, and is offered to a
  user who likes that genre (an exploration slot, reason "new"); likes of it are accepted;
- PATCH /admin/movies/{id} {"hidden": true} takes it out of every list at once;
- the next training takes an added movie with interactions in like any movie.
"""
from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import pytest

from test_feedback import _aws, fresh_user, ids, liked, post, recs, train_candidate

pytestmark = pytest.mark.timeout(600)
GENRE = "Film-Noir"


def admin(http, key: str, method: str, path: str, api: str, body: Any = None, **kw: Any):
    return http.request(method, f"{api}{path}", data=None if body is None else json.dumps(body),
                        headers={"x-api-key": key} if key else {}, timeout=30, **kw)


def hide_every_added_movie(api, http, admin_key, pg) -> None:
    """Earlier runs' added movies would compete for the same exploration slot: hide them (API)."""
    for (movie_id,) in pg.run("SELECT movie_id FROM movies WHERE added_at IS NOT NULL AND NOT hidden"):
        r = admin(http, admin_key, "PATCH", f"/admin/movies/{movie_id}", api, {"hidden": True})
        assert r.status_code == 200, r.text


def genre_movies(pg, genre: str, n: int) -> list[int]:
    """The ``n`` movies of ``genre`` with the most ratings (the model knows them)."""
    rows = pg.run("SELECT m.movie_id FROM movies m JOIN LATERAL (SELECT count(*) AS c FROM user_ratings r "
                  "WHERE m.movie_id = ANY(r.movies)) x ON true WHERE :g = ANY(m.genres) AND m.added_at IS NULL "
                  "ORDER BY x.c DESC, m.movie_id LIMIT :n", g=genre, n=n)
    return [int(r[0]) for r in rows]


def similar(http, api: str, movie_id: int, k: int = 10) -> dict[str, Any]:
    r = http.get(f"{api}/movies/{movie_id}/similar", params={"k": k}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_catalogues_admin_routes_need_the_key(api, http, pg):
    before = pg.run("SELECT count(*), count(*) FILTER (WHERE hidden) FROM movies")[0]
    for key in ("", "not-the-key"):
        r = admin(http, key, "POST", "/admin/movies", api, {"title": "Nope", "genres": ["Drama"]})
        assert r.status_code in (401, 403), r.text
        r = admin(http, key, "PATCH", "/admin/movies/1", api, {"hidden": True})
        assert r.status_code in (401, 403), r.text
    assert pg.run("SELECT count(*), count(*) FILTER (WHERE hidden) FROM movies")[0] == before


def test_an_added_movie_is_served_similar_recommended_and_hidden_at_once(api, http, admin_key, pg, wait):
    hide_every_added_movie(api, http, admin_key, pg)
    noir = genre_movies(pg, GENRE, 8)
    assert len(noir) == 8
    title = f"E2E Noir {uuid.uuid4().hex[:8]}"
    r = admin(http, admin_key, "POST", "/admin/movies", api, {"title": title, "year": 2026, "genres": [GENRE.lower()]})
    assert r.status_code == 201, r.text
    movie = r.json()
    new = movie["movie_id"]
    assert movie["title"] == title and movie["genres"] == [GENRE] and movie["hidden"] is False and movie["added_at"]
    got = http.get(f"{api}/movies/{new}", timeout=30)
    assert got.status_code == 200 and got.json()["title"] == title

    own = similar(http, api, new, 10)
    assert len(own["items"]) == 10 and new not in ids(own)
    assert sum(GENRE in i["genres"] for i in own["items"]) >= 5, own["items"]
    in_lists = [m for m in noir if new in ids(similar(http, api, m, 50))]
    assert in_lists, "the added movie is in none of the top-50 similar lists of the 8 most rated noir movies"

    fan = fresh_user()
    for m in noir[:5]:
        assert post(http, api, "/likes", {"user_id": fan, "movie_id": m}).status_code == 202
    assert wait(lambda: len(liked(http, api, fan)) == 5, timeout=20)
    page = recs(http, api, fan, 10)
    assert page["strategy"] == "fold_in" and new in ids(page), ids(page)
    item = next(i for i in page["items"] if i["movie_id"] == new)
    assert item["reasons"] == [{"kind": "new", "share": 1.0}]
    assert post(http, api, "/feedback", {"user_id": fan, "movie_id": new, "type": "like"}).status_code == 202
    assert wait(lambda: new in liked(http, api, fan), timeout=10)

    r = admin(http, admin_key, "PATCH", f"/admin/movies/{new}", api, {"hidden": True})
    assert r.status_code == 200 and r.json()["hidden"] is True
    other = fresh_user()  # a second fan who never touched it
    for m in noir[:5]:
        assert post(http, api, "/likes", {"user_id": other, "movie_id": m}).status_code == 202
    assert wait(lambda: len(liked(http, api, other)) == 5, timeout=20)
    assert new not in ids(recs(http, api, other, 10))  # the very next requests: gone
    assert all(new not in ids(similar(http, api, m, 50)) for m in in_lists)
    assert new not in ids(recs(http, api, other, 20, include_genres=GENRE))
    assert admin(http, admin_key, "PATCH", "/admin/movies/2147483000", api, {"hidden": True}).status_code == 404
    assert admin(http, admin_key, "PATCH", f"/admin/movies/{new}", api, {"hidden": "yes"}).status_code == 400
    assert admin(http, admin_key, "POST", "/admin/movies", api, {"title": "x", "genres": ["Cartoon"]}).status_code == 400


def test_the_next_training_takes_an_added_movie_in(api, http, admin_key, pg, wait, tmp_path):
    from movierecs_serving import ModelStore

    hide_every_added_movie(api, http, admin_key, pg)
    r = admin(http, admin_key, "POST", "/admin/movies", api, {"title": f"E2E Western {uuid.uuid4().hex[:8]}",
                                                            "year": 2026, "genres": ["Western"]})
    assert r.status_code == 201, r.text
    new = r.json()["movie_id"]
    westerns = genre_movies(pg, "Western", 5)
    users = [fresh_user() for _ in range(5)]
    for u in users:
        for m in westerns + [new]:
            assert post(http, api, "/likes", {"user_id": u, "movie_id": m}).status_code == 202
    assert wait(lambda: all(new in liked(http, api, u) for u in users), timeout=30)

    aws = _aws(api)
    candidate = train_candidate(aws, "new-movie")
    art = ModelStore(aws["s3"], aws["bucket"]).load(candidate, str(tmp_path / "candidate"))
    assert new in set(art.item_ids.tolist()) and set(users) <= set(art.user_ids.tolist())
    r = admin(http, admin_key, "PATCH", f"/admin/movies/{new}", api, {"hidden": True})
    assert r.status_code == 200
