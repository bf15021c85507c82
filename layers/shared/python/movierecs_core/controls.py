"""What a caller may ask of a listing besides k (issue 11): filters, diversity, the next page.

GET /recommendations and GET /movies/{id}/similar take the same controls; ``from_query`` is
the one parser of their query parameters, so both routes validate them alike.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import filters
from .filters import Filters
from .validation import parse_fraction


@dataclass(frozen=True)
class Controls:
    """The default asks for today's listing: unfiltered, pure relevance, the first page."""

    filters: Filters = field(default_factory=Filters)
    #: 0 is pure relevance; up to 1 trades score for spread (maximal marginal relevance).
    diversity: float = 0.0
    #: The previous page's ``next_cursor``, still opaque here (``paging.resume`` reads it).
    cursor: str | None = None


def from_query(query: Callable[[str], str | None]) -> Controls:
    """The controls of a request's query string; 400s say what is wrong."""
    return Controls(
        filters=filters.from_query(query),
        diversity=parse_fraction("diversity", query("diversity")),
        cursor=query("cursor"),
    )
