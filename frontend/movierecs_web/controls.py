"""The list controls of the recommendations page as plain data: no Reflex, no HTTP.

Why a module of its own: the genre chips, year range and diversity slider turn into API
query parameters, and every item's `reasons` into one short sentence; keeping that logic
pure keeps `state.py` about state and lets tests/unit check it without a browser
(tests/unit/test_frontend_controls.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from . import posters

# The MovieLens genres, in MovieLens' own (alphabetical) order: the API accepts these.
GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
YEAR_MIN, YEAR_MAX = 1800, 2100  # the API's bounds for year_min / year_max
DIVERSITY_STEP = 0.1

Mode = Literal["any", "include", "exclude"]
# One click moves a chip one step: neutral -> include -> exclude -> neutral.
NEXT_MODE: dict[str, Mode] = {"any": "include", "include": "exclude", "exclude": "any"}
MODE_WORDS: dict[str, str] = {
    "any": "any (click to include)",
    "include": "included (click to exclude)",
    "exclude": "excluded (click to clear)",
}


def next_mode(mode: str) -> Mode:
    """The chip's mode after one click (an unknown mode starts over at include)."""
    return NEXT_MODE.get(mode, "include")


def chip_label(genre: str, mode: str) -> str:
    """The chip's accessible name: the genre, its state and what a click does."""
    return f"{genre}: {MODE_WORDS.get(mode, MODE_WORDS['any'])}"


@dataclasses.dataclass(frozen=True)
class Filters:
    """What the controls ask the API for; `params()` is the query string part."""

    include_genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    diversity: float = 0.0
    exclude: tuple[int, ...] = ()

    @property
    def filtering(self) -> bool:
        """True when the API is asked to take movies out (diversity only re-orders)."""
        return bool(self.include_genres or self.exclude_genres or self.exclude
                    or self.year_min is not None or self.year_max is not None)

    def params(self) -> dict[str, str]:
        """Only the parameters that are set, so an untouched page sends today's plain call."""
        out: dict[str, str] = {}
        if self.include_genres:
            out["include_genres"] = ",".join(self.include_genres)
        if self.exclude_genres:
            out["exclude_genres"] = ",".join(self.exclude_genres)
        if self.year_min is not None:
            out["year_min"] = str(self.year_min)
        if self.year_max is not None:
            out["year_max"] = str(self.year_max)
        if self.exclude:
            out["exclude"] = ",".join(str(i) for i in self.exclude)
        if self.diversity > 0:
            out["diversity"] = f"{self.diversity:g}"
        return out


NO_FILTERS = Filters()


def parse_year(text: str, which: str) -> int | None:
    """An empty field is no bound; otherwise a year in the API's range, or ValueError."""
    raw = str(text).strip()
    if not raw:
        return None
    hint = f"{which} year must be a year from {YEAR_MIN} to {YEAR_MAX}, e.g. 1990 (or empty)."
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(hint)
    value = int(raw)
    if not YEAR_MIN <= value <= YEAR_MAX:
        raise ValueError(hint)
    return value


def parse_diversity(text: str) -> float:
    """0..1 rounded to the slider's step (0.1), or ValueError."""
    try:
        value = float(str(text).strip() or "0")
    except ValueError:
        raise ValueError("Diversity must be a number from 0 to 1.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError("Diversity must be a number from 0 to 1.")
    return round(round(value / DIVERSITY_STEP) * DIVERSITY_STEP, 1)


def build_filters(modes: Mapping[str, str], year_min_text: str, year_max_text: str,
                  diversity_text: str) -> Filters:
    """The controls' values as Filters; ValueError with a message saying what to fix."""
    year_min = parse_year(year_min_text, "From")
    year_max = parse_year(year_max_text, "To")
    if year_min is not None and year_max is not None and year_min > year_max:
        raise ValueError(f"From year ({year_min}) is after To year ({year_max}): swap them.")
    return Filters(
        include_genres=tuple(g for g in GENRES if modes.get(g) == "include"),
        exclude_genres=tuple(g for g in GENRES if modes.get(g) == "exclude"),
        year_min=year_min, year_max=year_max, diversity=parse_diversity(diversity_text),
    )


def join_titles(titles: Sequence[str]) -> str:
    """["A"] -> "A"; ["A", "B"] -> "A and B"; ["A", "B", "C"] -> "A, B and C"."""
    if len(titles) <= 1:
        return "".join(titles)
    return ", ".join(titles[:-1]) + " and " + titles[-1]


def _title(reason: Mapping[str, Any]) -> str:
    title = str(reason.get("title") or "").strip()
    return posters.display_title(title) if title else f"movie {reason.get('movie_id', '?')}"


def reasons_text(reasons: Iterable[Mapping[str, Any]]) -> str:
    """One short sentence for a card: "Because you liked Alien and rated The Terminator".

    Groups keep the API's order (the largest share first); a popular list says so; an
    empty list (a filtered list can reach movies no history item points to) says nothing.
    """
    items = [r for r in reasons if isinstance(r, Mapping)]
    kinds = [str(r.get("kind", "")) for r in items]
    if "popular" in kinds:
        return "Popular with everyone"
    if "similar" in kinds:
        return "Similar to " + join_titles([_title(r) for r in items if r.get("kind") == "similar"])
    groups: dict[str, list[str]] = {}
    for reason, kind in zip(items, kinds):
        if kind in ("liked", "rated"):
            groups.setdefault(kind, []).append(_title(reason))
    if not groups:
        return ""
    parts = [f"{kind} {join_titles(titles)}" for kind, titles in groups.items()]
    glue = ", and " if len(parts) > 1 and len(next(iter(groups.values()))) > 1 else " and "
    return "Because you " + glue.join(parts)


def reasons_detail(reasons: Iterable[Mapping[str, Any]]) -> str:
    """The shares behind the sentence, for the tooltip: "Alien 31% · The Terminator 12%"."""
    parts = []
    for r in reasons:
        if not isinstance(r, Mapping) or r.get("kind") not in ("liked", "rated"):
            continue
        try:
            share = f" {float(r.get('share', 0)) * 100:.0f}%"
        except (TypeError, ValueError):
            share = ""
        parts.append(f"{_title(r)}{share}")
    return ("Share of the score: " + " · ".join(parts)) if parts else ""


def reason_ids(reasons: Iterable[Mapping[str, Any]]) -> list[int]:
    """The history movies a card's reasons name (rendered for tests as data-reason-ids)."""
    out = []
    for r in reasons:
        if isinstance(r, Mapping) and r.get("kind") in ("liked", "rated", "similar"):
            try:
                out.append(int(r["movie_id"]))
            except (KeyError, TypeError, ValueError):
                continue
    return out


CURSOR_NOTICES: dict[str, str] = {
    "cursor_stale": "A newer model is being served now, so the list starts again from the top.",
    "cursor_mismatch": "The list changed, so it starts again from the top.",
    "cursor_malformed": "The list could not be continued, so it starts again from the top.",
}


def cursor_notice(code: str | None) -> str | None:
    """The notice to show when Load more must reload the first page; None: not a cursor error."""
    return CURSOR_NOTICES.get(code or "")


def exhausted_text(count: int) -> str:
    """Shown when the API says fewer movies matched than were asked for."""
    if count <= 0:
        return "No movie matches these filters."
    if count == 1:
        return "Only 1 movie matches these filters."
    return f"Only {count} movies match these filters."


def new_ids(shown: Iterable[int], page: Iterable[int]) -> list[int]:
    """The page's ids not shown yet, in order (pages never repeat; this keeps the grid honest)."""
    seen = set(shown)
    out = []
    for i in page:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out
