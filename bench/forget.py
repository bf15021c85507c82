"""Forgetting a user (issue 12): how long DELETE /users/{id} takes, how soon the user is served
as new, and what the ClickHouse part costs at 1M ratings.

On the running stack (loopback URLs of ``.movierecs/endpoints.json``). Each round picks a
MovieLens user that still has ratings, sends DELETE /users/{id} with the admin key, then GET
/recommendations for them at once: the first answer must already be ``popular`` (counted in
``errors`` otherwise). Baselines in the same run, interleaved round by round: GET
/admin/models (the same admin function, no deletion) and GET /recommendations of a user that
is not deleted. The ClickHouse share is timed in process on users of its own: the synchronous
``ALTER TABLE ... DELETE`` of one user's ratings and likes (``stores.clickhouse.delete_user``)
against a ``count()`` of the same rows (the lookup every delete starts with).

It really deletes: ``rounds`` MovieLens users (ids 3001..6000, random) lose their data.
"""
from __future__ import annotations

import random
import time

import requests

from bench import harness


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def run(quick: bool) -> dict:
    from movierecs_core.stores import clickhouse

    e = harness.endpoints()
    api, key = e["api"].rstrip("/"), e["admin_api_key"]
    ch = clickhouse.connect(e["clickhouse"])
    rng = random.Random(12)
    rounds = 5 if quick else 20
    s = requests.Session()
    lat = {"DELETE /users/{id}": [], "GET /admin/models (baseline)": []}
    first = {"GET /recommendations right after DELETE": [], "GET /recommendations, user kept (baseline)": []}
    chd = {"ClickHouse delete_user (ratings + likes)": [], "ClickHouse count() of the same user (baseline)": []}
    errors = 0
    users: list[int] = []
    while len(users) < 2 * rounds:
        u = rng.randint(3001, 6000)
        if u not in users and clickhouse.count_user_rows(ch, u)["ratings"] > 0:
            users.append(u)
    for i in range(rounds):
        http_user, ch_user = users[2 * i], users[2 * i + 1]
        t0 = time.perf_counter()
        s.get(f"{api}/admin/models", headers={"x-api-key": key}, timeout=30).raise_for_status()
        lat["GET /admin/models (baseline)"].append(_ms(t0))
        t0 = time.perf_counter()
        r = s.delete(f"{api}/users/{http_user}", headers={"x-api-key": key}, timeout=60)
        lat["DELETE /users/{id}"].append(_ms(t0))
        if r.status_code != 200:
            errors += 1
            continue
        t0 = time.perf_counter()
        body = s.get(f"{api}/recommendations", params={"user_id": http_user, "k": 10}, timeout=30).json()
        first["GET /recommendations right after DELETE"].append(_ms(t0))
        errors += body.get("strategy") != "popular"
        t0 = time.perf_counter()
        s.get(f"{api}/recommendations", params={"user_id": 1, "k": 10}, timeout=30).raise_for_status()
        first["GET /recommendations, user kept (baseline)"].append(_ms(t0))
        t0 = time.perf_counter()
        clickhouse.count_user_rows(ch, ch_user)
        chd["ClickHouse count() of the same user (baseline)"].append(_ms(t0))
        t0 = time.perf_counter()
        clickhouse.delete_user(ch, ch_user)
        chd["ClickHouse delete_user (ratings + likes)"].append(_ms(t0))
    ratings = int(ch.command("SELECT count() FROM ratings"))
    ch.close()
    return {
        "figures": [
            harness.distribution("forget_latency", "DELETE /users/{id} through the gateway (both stores)", lat,
                                 baseline="GET /admin/models (baseline)", errors=errors,
                                 note="the admin function: PostgreSQL transaction, then ClickHouse mutations"),
            harness.distribution("forget_served_as_new", "The first GET /recommendations after the DELETE's answer",
                                 first, baseline="GET /recommendations, user kept (baseline)", errors=errors,
                                 note="errors counts answers that were not 'popular' (none expected)"),
            harness.distribution("forget_clickhouse", f"ClickHouse: one user's rows deleted at {ratings:,} ratings",
                                 chd, baseline="ClickHouse count() of the same user (baseline)",
                                 note="ALTER TABLE ... DELETE, mutations_sync = 2, chDB endpoint"),
        ],
        "params": {"rounds": rounds, "ratings_rows": ratings},
        "notes": "the first GET after the DELETE was already 'popular' in every round" if not errors else "",
    }


if __name__ == "__main__":
    harness.cli("forget", run)
