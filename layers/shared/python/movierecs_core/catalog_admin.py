"""POST /admin/movies and PATCH /admin/movies/{movie_id} (admin; issue 12, part 3).

A movie added here is a catalogue row like any other (GET /movies/{id} serves it, POST /likes
and /feedback accept it, the next training takes its interactions in), with ``added_at`` set;
until a model knows it, the read side gives it a vector from its genres (``new_items``).
A hidden movie leaves every list at once: the request path reads the hidden ids with each
user's state (one round trip it makes anyway), not from the environment's catalogue cache.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .errors import bad_request, not_found
from .events import format_ts
from .filters import GENRES
from .stores import postgres

_BY_LOWER = {g.lower(): g for g in GENRES}
TITLE_MAX = 300
YEARS = (1800, 2100)


def _movie(row: Any) -> dict[str, Any]:
    movie_id, title, year, genres, added_at, hidden = row
    return {"movie_id": int(movie_id), "title": str(title), "year": None if year is None else int(year),
            "genres": list(genres or ()), "added_at": format_ts(added_at) if isinstance(added_at, datetime) else None,
            "hidden": bool(hidden)}


def parse_new_movie(payload: Any) -> tuple[str, int | None, list[str]]:
    """(title, year, genres) of a POST /admin/movies body; 400s say what is wrong."""
    if not isinstance(payload, dict):
        raise bad_request('the body must be a JSON object such as {"title": "Arrival", "year": 2016, "genres": ["Sci-Fi"]}')
    title = payload.get("title")
    if not isinstance(title, str) or not title.strip():
        raise bad_request("'title' is required: a non-empty string")
    if len(title.strip()) > TITLE_MAX:
        raise bad_request(f"'title' is {len(title.strip())} characters long; at most {TITLE_MAX} are allowed")
    year = payload.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not YEARS[0] <= year <= YEARS[1]):
        raise bad_request(f"'year' must be an integer from {YEARS[0]} to {YEARS[1]} (or left out), got {json.dumps(year)[:40]}")
    raw = payload.get("genres")
    if not isinstance(raw, list) or not raw or len(raw) > len(GENRES):
        raise bad_request(f"'genres' is required: a list of 1 to {len(GENRES)} of {', '.join(GENRES)}")
    genres: list[str] = []
    for g in raw:
        known = _BY_LOWER.get(g.strip().lower()) if isinstance(g, str) else None
        if known is None:
            raise bad_request(f"'genres': unknown genre {json.dumps(g)[:40]}; valid genres: {', '.join(GENRES)}")
        if known not in genres:
            genres.append(known)
    return title.strip(), year, genres


def add_movie(db: Any, payload: Any) -> dict[str, Any]:
    """Validate and insert; the new movie with its id (the answer of 201)."""
    title, year, genres = parse_new_movie(payload)
    return _movie(postgres.add_movie(db, title, year, genres))


def patch_movie(db: Any, movie_id: int, payload: Any) -> dict[str, Any]:
    """``{"hidden": bool}``: hide or show a movie; 404 for an unknown id."""
    if not isinstance(payload, dict) or not isinstance(payload.get("hidden"), bool) or set(payload) - {"hidden"}:
        raise bad_request('the body must be {"hidden": true} or {"hidden": false}')
    row = postgres.set_movie_hidden(db, movie_id, payload["hidden"])
    if row is None:
        raise not_found(f"movie {movie_id} does not exist")
    return _movie(row)
