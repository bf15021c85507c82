"""End-to-end: the list filters (genres, years, exclude) through API Gateway, for a known, a
fold-in and a new user, and on similar movies; bad filters are clear 400s."""
from __future__ import annotations

import random

import requests

K = 10


def _genres(pg, ids: list[int]) -> dict[int, set[str]]:
    rows = pg.run("SELECT movie_id, genres FROM movies WHERE movie_id = ANY(CAST(:ids AS int[]))", ids=ids)
    return {int(m): set(g) for m, g in rows}


def _fold_in_user(api: str, http: requests.Session, wait, movies: list[int]) -> int:
    user = random.randint(1_000_000_000, 1_999_999_999)
    for m in movies:
        assert http.post(f"{api}/likes", json={"user_id": user, "movie_id": m}, timeout=30).status_code == 202
    got = wait(lambda: http.get(f"{api}/recommendations", params={"user_id": user}, timeout=30)
               .json()["strategy"] == "fold_in", timeout=5.0, interval=0.1)
    assert got, "the likes did not fold in within 5 s"
    return user


def test_exclude_genres_for_known_fold_in_and_new_users(api, http, pg, ch, popular, wait):
    known = int(ch.query("SELECT user_id FROM ratings GROUP BY user_id ORDER BY count() DESC LIMIT 1").result_rows[0][0])
    fold_in = _fold_in_user(api, http, wait, popular[:3])
    new = random.randint(1_000_000_000, 1_999_999_999)
    for user, strategy in ((known, "personal"), (fold_in, "fold_in"), (new, "popular")):
        r = http.get(f"{api}/recommendations", params={"user_id": user, "k": K, "exclude_genres": "Comedy"}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        ids = [i["movie_id"] for i in body["items"]]
        assert body["strategy"] == strategy and len(ids) == K and body["exhausted"] is False
        assert not any("Comedy" in g for g in _genres(pg, ids).values()), body
        assert all("Comedy" not in i["genres"] for i in body["items"])


def test_include_genres_years_and_exclude_combine(api, http, pg, popular):
    user = random.randint(1_000_000_000, 1_999_999_999)
    plain = http.get(f"{api}/recommendations", params={"user_id": user, "k": K, "include_genres": "Animation"},
                     timeout=30).json()
    first = plain["items"][0]["movie_id"]
    r = http.get(f"{api}/recommendations", timeout=30, params={
        "user_id": user, "k": K, "include_genres": "animation,Children's", "year_min": 1990, "year_max": 1999,
        "exclude": str(first)})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == K and first not in [i["movie_id"] for i in items]
    assert all({"Animation", "Children's"} & set(i["genres"]) and 1990 <= i["year"] <= 1999 for i in items)


def test_fewer_matches_than_k_says_so(api, http):
    r = http.get(f"{api}/recommendations", timeout=30, params={
        "user_id": 1, "k": 100, "include_genres": "Film-Noir", "year_min": 1998})
    body = r.json()
    assert r.status_code == 200 and body["exhausted"] is True and len(body["items"]) < 100
    assert all("Film-Noir" in i["genres"] and i["year"] >= 1998 for i in body["items"])


def test_similar_takes_the_same_filters(api, http, popular):
    r = http.get(f"{api}/movies/{popular[0]}/similar", params={"k": K, "exclude_genres": "Drama,Comedy"}, timeout=30)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == K and not any({"Drama", "Comedy"} & set(i["genres"]) for i in items)


def test_bad_filters_are_clear_400s(api, http):
    for params, word in (({"include_genres": "Cartoon"}, "valid genres: Action"),
                         ({"year_min": "2000", "year_max": "1990"}, "year_min"),
                         ({"exclude": ",".join(str(i) for i in range(1, 102))}, "at most 100"),
                         ({"exclude_genres": "Drama", "include_genres": "drama"}, "both")):
        r = http.get(f"{api}/recommendations", params={"user_id": 1, **params}, timeout=30)
        assert r.status_code == 400 and word in r.json()["error"], (params, r.text)
