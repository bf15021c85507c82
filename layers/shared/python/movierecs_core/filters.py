"""Filters a caller puts on a list (issue 11, part 1): genres, a year range, movies to leave out.

They apply to every strategy (personal, fold_in, popular) and to similar movies, after the
model ranked its candidates: a filtered list is the unfiltered ranking with the movies that
do not match taken out, so it never holds fewer than k items while enough movies match
(the service widens its candidates to the whole catalogue before giving up), and says so
(``"exhausted": true``) when fewer match.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Movie
from .errors import bad_request
from .validation import parse_bounded, parse_id

#: The MovieLens 1M genres (movies.dat), as the catalogue spells them.
GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_BY_LOWER = {g.lower(): g for g in GENRES}
MAX_EXCLUDE = 100
YEARS = (1800, 2100)


@dataclass(frozen=True)
class Filters:
    """What a listing must (not) contain; the default filters nothing."""

    include_genres: frozenset[str] = frozenset()
    exclude_genres: frozenset[str] = frozenset()
    year_min: int | None = None
    year_max: int | None = None
    exclude: frozenset[int] = frozenset()

    @property
    def active(self) -> bool:
        """True when any filter is set (the service then asks the model for more candidates)."""
        return bool(self.include_genres or self.exclude_genres or self.exclude
                    or self.year_min is not None or self.year_max is not None)

    def matches(self, movie: Movie) -> bool:
        """Whether ``movie`` may be listed: one of the included genres (if any), none of the
        excluded ones, its year in range (a movie without a year fails a year filter)."""
        genres = set(movie.genres)
        if movie.movie_id in self.exclude:
            return False
        if self.include_genres and not genres & self.include_genres:
            return False
        if genres & self.exclude_genres:
            return False
        if self.year_min is not None or self.year_max is not None:
            if movie.year is None:
                return False
            if self.year_min is not None and movie.year < self.year_min:
                return False
            if self.year_max is not None and movie.year > self.year_max:
                return False
        return True


def _genres(name: str, raw: str | None) -> frozenset[str]:
    if raw is None:
        return frozenset()
    out = set()
    for part in raw.split(","):
        g = _BY_LOWER.get(part.strip().lower())
        if g is None:
            raise bad_request(f"'{name}': unknown genre '{part.strip()[:40]}'; valid genres: {', '.join(GENRES)}")
        out.add(g)
    return frozenset(out)


def _ids(name: str, raw: str | None) -> frozenset[int]:
    if raw is None:
        return frozenset()
    parts = [p for p in raw.split(",") if p.strip()]
    if len(parts) > MAX_EXCLUDE:
        raise bad_request(f"'{name}' lists {len(parts)} movie ids; at most {MAX_EXCLUDE} are accepted")
    return frozenset(parse_id(name, p) for p in parts)


def _year(name: str, raw: str | None) -> int | None:
    return None if raw is None else parse_bounded(name, raw, YEARS[0], YEARS[1], YEARS[0])


def from_query(query: Callable[[str], str | None]) -> Filters:
    """The filters of a request's query string (``query(name)`` gives one value); 400s say what is wrong."""
    f = Filters(
        include_genres=_genres("include_genres", query("include_genres")),
        exclude_genres=_genres("exclude_genres", query("exclude_genres")),
        year_min=_year("year_min", query("year_min")),
        year_max=_year("year_max", query("year_max")),
        exclude=_ids("exclude", query("exclude")),
    )
    if f.year_min is not None and f.year_max is not None and f.year_min > f.year_max:
        raise bad_request(f"'year_min' ({f.year_min}) is after 'year_max' ({f.year_max})")
    both = f.include_genres & f.exclude_genres
    if both:
        raise bad_request(f"genres both included and excluded: {', '.join(sorted(both))}")
    return f
