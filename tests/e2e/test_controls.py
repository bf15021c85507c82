"""End-to-end: paging with cursors, diversity and per-item reasons through API Gateway, for a
known user (ratings in the model, likes after it) and a fold-in user; bad cursors are 400s."""
from __future__ import annotations

import random

import requests

from tests.e2e.test_filters import _fold_in_user, _genres

K = 10


def _known_user_with_a_like(api: str, http: requests.Session, ch, wait) -> tuple[int, set[int], set[int]]:
    """A user of the model with a few dozen ratings, who also likes a movie now: (user, rated, liked)."""
    user, = ch.query("SELECT user_id FROM ratings GROUP BY user_id HAVING count() BETWEEN 40 AND 60 "
                     "ORDER BY user_id LIMIT 1 OFFSET 7").result_rows[0]
    rated = {int(m) for m, in ch.query("SELECT movie_id FROM ratings WHERE user_id = {u:UInt32}",
                                        parameters={"u": user}).result_rows}
    shown = http.get(f"{api}/recommendations", params={"user_id": user, "k": 1}, timeout=30).json()["items"]
    liked = shown[0]["movie_id"]
    assert http.post(f"{api}/likes", json={"user_id": int(user), "movie_id": liked}, timeout=30).status_code == 202
    gone = wait(lambda: liked not in [i["movie_id"] for i in http.get(
        f"{api}/recommendations", params={"user_id": user, "k": 20}, timeout=30).json()["items"]], timeout=5.0)
    assert gone, "the like did not reach the list within 5 s"
    likes = http.get(f"{api}/users/{user}/likes", params={"limit": 1000}, timeout=30).json()["items"]
    return int(user), rated, {i["movie_id"] for i in likes}


def _pages(api: str, http: requests.Session, path: str, params: dict, n: int) -> list[list[int]]:
    pages, cursor = [], None
    for _ in range(n):
        r = http.get(f"{api}{path}", params={**params, **({"cursor": cursor} if cursor else {})}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([i["movie_id"] for i in body["items"]])
        cursor = body["next_cursor"]
        assert cursor, body
    return pages


def test_three_pages_share_no_movie_and_exclude_what_the_user_rated_or_liked(api, http, ch, wait):
    user, rated, liked = _known_user_with_a_like(api, http, ch, wait)
    for diversity in (0, 0.5):
        pages = _pages(api, http, "/recommendations", {"user_id": user, "k": K, "diversity": diversity}, 3)
        every = [m for p in pages for m in p]
        assert all(len(p) == K for p in pages) and len(set(every)) == 3 * K, pages
        assert not set(every) & (rated | liked), diversity
    plain = http.get(f"{api}/recommendations", params={"user_id": user, "k": 3 * K}, timeout=30).json()
    assert [m for p in _pages(api, http, "/recommendations", {"user_id": user, "k": K}, 3) for m in p] == \
        [i["movie_id"] for i in plain["items"]], "at diversity 0 the pages are the ranking cut in three"


def test_similar_pages_and_filters_with_a_cursor(api, http, popular):
    pages = _pages(api, http, f"/movies/{popular[0]}/similar", {"k": K, "exclude_genres": "Comedy"}, 3)
    every = [m for p in pages for m in p]
    assert len(set(every)) == 3 * K and popular[0] not in every


def test_diversity_one_has_more_distinct_genres_than_diversity_zero(api, http, pg, ch, wait, popular):
    user, _, _ = _known_user_with_a_like(api, http, ch, wait)
    fold_in = _fold_in_user(api, http, wait, popular[:3])
    for u in (user, fold_in):
        lists = {}
        for d in (0, 1):
            r = http.get(f"{api}/recommendations", params={"user_id": u, "k": K, "diversity": d}, timeout=30)
            assert r.status_code == 200, r.text
            lists[d] = [i["movie_id"] for i in r.json()["items"]]
        distinct = {d: len(set().union(*_genres(pg, ids).values())) for d, ids in lists.items()}
        assert distinct[1] > distinct[0], (u, distinct, lists)


def test_reasons_name_only_movies_of_the_users_history(api, http, ch, wait, popular):
    user, rated, liked = _known_user_with_a_like(api, http, ch, wait)
    body = http.get(f"{api}/recommendations", params={"user_id": user, "k": K}, timeout=30).json()
    reasons = [r for i in body["items"] for r in i["reasons"]]
    assert body["strategy"] == "personal" and reasons
    assert all(r["movie_id"] in rated | liked and r["title"] and 0 < r["share"] for r in reasons), reasons
    assert all(r["kind"] == ("liked" if r["movie_id"] in liked else "rated") for r in reasons)
    assert all(len(i["reasons"]) <= 3 for i in body["items"])
    likes = popular[:3]
    fold_in = _fold_in_user(api, http, wait, likes)
    body = http.get(f"{api}/recommendations", params={"user_id": fold_in, "k": K}, timeout=30).json()
    assert all(r["kind"] == "liked" and r["movie_id"] in likes for i in body["items"] for r in i["reasons"])
    new = random.randint(1_000_000_000, 1_999_999_999)
    body = http.get(f"{api}/recommendations", params={"user_id": new, "k": 3}, timeout=30).json()
    assert all(i["reasons"] == [{"kind": "popular", "share": 1.0}] for i in body["items"])


def test_a_malformed_or_foreign_cursor_is_a_400_that_says_what_to_do(api, http):
    first = http.get(f"{api}/recommendations", params={"user_id": 1, "k": 3}, timeout=30).json()
    for params, code in (({"user_id": 1, "cursor": "not-a-cursor"}, "cursor_malformed"),
                         ({"user_id": 1, "cursor": first["next_cursor"][:-4]}, "cursor_malformed"),
                         ({"user_id": 2, "cursor": first["next_cursor"]}, "cursor_mismatch"),
                         ({"user_id": 1, "diversity": "0.9", "cursor": first["next_cursor"]}, "cursor_mismatch")):
        r = http.get(f"{api}/recommendations", params=params, timeout=30)
        assert r.status_code == 400 and r.json()["code"] == code and "cursor" in r.json()["error"], (params, r.text)
    r = http.get(f"{api}/movies/1/similar", params={"cursor": "%%%"}, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "cursor_malformed"
    for bad in ("2", "high", "0.5.1"):
        r = http.get(f"{api}/recommendations", params={"user_id": 1, "diversity": bad}, timeout=30)
        assert r.status_code == 400 and "diversity" in r.json()["error"]
