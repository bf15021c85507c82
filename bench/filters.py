"""What a filter costs (issue 11): GET /recommendations plain against the same call with
filters, with filters and a cursor (the second page), and with diversity, through the
gateway, interleaved round by round in one run (1 client), for known users; plus
GET /movies/{id}/similar plain and filtered.

Filters: ``exclude_genres=Comedy&year_min=1980`` (a common, moderately selective one) and
``include_genres=Film-Noir`` (a rare genre: the service widens its candidates to the whole
catalogue). Traffic goes only to the loopback URLs of ``.movierecs/endpoints.json``.
"""
from __future__ import annotations

import requests

from bench import harness
from bench.read_path import interleaved

FILTER = "exclude_genres=Comedy&year_min=1980"
ROUTES = {
    "plain": lambda users: (lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10"),
    FILTER: lambda users: (lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10&{FILTER}"),
    "include_genres=Film-Noir (rare)": lambda users: (
        lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10&include_genres=Film-Noir"),
    "diversity=0.3": lambda users: (lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10&diversity=0.3"),
    "similar, plain": lambda users: (lambda i: f"/movies/{users[i % len(users)] % 3000 + 1}/similar?k=10"),
    "similar, exclude_genres=Drama": lambda users: (
        lambda i: f"/movies/{users[i % len(users)] % 3000 + 1}/similar?k=10&exclude_genres=Drama"),
}


def second_pages(api: str, users: list[int]) -> dict[int, str]:
    """Each user's ``next_cursor`` of the filtered first page (asked once, before the timing)."""
    s = requests.Session()
    return {u: s.get(f"{api}/recommendations?user_id={u}&k=10&{FILTER}", timeout=30).json()["next_cursor"]
            for u in users}


def run(quick: bool) -> dict:
    e = harness.endpoints()
    api = e["api"].rstrip("/")
    users = list(range(1, 301))
    rounds, per = (3, 20) if quick else (8, 50)
    cursors = second_pages(api, users)
    ROUTES[f"{FILTER} + cursor (page 2)"] = lambda users: (
        lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10&{FILTER}&cursor={cursors[users[i % len(users)]]}")
    interleaved(api, users, 4, 1, 20, ROUTES)  # warm the environments and their catalogue caches
    r = interleaved(api, users, 1, rounds, per, ROUTES)
    p50 = {k: harness.summarize(v)["p50"] for k, v in r["latency"].items()}
    return {"figures": [
        harness.distribution("filters_latency", "GET /recommendations with and without filters, 1 client (interleaved)",
                             {k: v for k, v in r["latency"].items() if not k.startswith("similar")},
                             baseline="plain", errors=r["errors"]),
        harness.distribution("filters_similar", "GET /movies/{id}/similar with and without a filter, 1 client",
                             {k: v for k, v in r["latency"].items() if k.startswith("similar")},
                             baseline="similar, plain"),
        harness.scalars("filters_ratio", "Filtered (or paged, or diversified) p50 / plain p50, same run (target <= 1.1 with filters and a cursor)", {
            k: (round(p50[k] / p50["similar, plain" if k.startswith("similar") else "plain"], 2), "x")
            for k in ROUTES if k not in ("plain", "similar, plain")}),
    ], "params": {"rounds": rounds, "per_round": per, "users": len(users)}}


if __name__ == "__main__":
    harness.cli("filters", run)
