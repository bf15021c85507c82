"""Movie rows (title, year, genres) from PostgreSQL, with a small in-memory cache.

The catalogue changes only when data is loaded, so rows are cached per environment for a
few minutes; an id that is not found is asked again next time (never cached as missing).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from .stores.postgres import Postgres, movies_by_id


@dataclass(frozen=True)
class Movie:
    """One catalogue row."""

    movie_id: int
    title: str
    year: int | None
    genres: tuple[str, ...]

    def to_json(self) -> dict:
        """The contract's movie object."""
        return {"movie_id": self.movie_id, "title": self.title, "year": self.year, "genres": list(self.genres)}


class Catalog:
    """Looks movies up by id; ``ttl`` seconds of caching, at most ``max_rows`` rows."""

    def __init__(self, db: Postgres, ttl: float = 600.0, max_rows: int = 20000):
        self._db = db
        self._ttl = ttl
        self._max_rows = max_rows
        self._rows: dict[int, tuple[float, Movie]] = {}
        self._lock = threading.Lock()

    def get_many(self, movie_ids: Iterable[int]) -> dict[int, Movie]:
        """The known movies among ``movie_ids`` (unknown ids are simply absent)."""
        ids = list(dict.fromkeys(int(i) for i in movie_ids))
        now = time.monotonic()
        found: dict[int, Movie] = {}
        missing: list[int] = []
        with self._lock:
            for i in ids:
                hit = self._rows.get(i)
                if hit is not None and now - hit[0] < self._ttl:
                    found[i] = hit[1]
                else:
                    missing.append(i)
        if missing:
            rows = movies_by_id(self._db, missing)
            with self._lock:
                if len(self._rows) + len(rows) > self._max_rows:
                    self._rows.clear()
                for movie_id, title, year, genres in rows:
                    m = Movie(int(movie_id), str(title), None if year is None else int(year), tuple(genres or ()))
                    self._rows[m.movie_id] = (now, m)
                    found[m.movie_id] = m
        return found

    def get(self, movie_id: int) -> Movie | None:
        """One movie or None."""
        return self.get_many([movie_id]).get(movie_id)
