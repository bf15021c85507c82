"""Cursors for the next page of a listing (issue 11): pages never repeat a movie.

A cursor is opaque to callers: URL-safe base64 of compressed JSON holding the model version it
was made for, a fingerprint of the listing (endpoint, user or movie, genre/year filters,
diversity) and the movies earlier pages served. The next page is the listing again with those
movies left out (and, under diversity, counted as already shown), so it never repeats one even
when the user liked something in between, and the same cursor gives the same page while the
served model version does not change.

What a caller gets instead of a page (docs/API.md, "Paging"): a 400 with ``code``
``cursor_malformed`` (not one of ours, or altered), ``cursor_mismatch`` (made for another
listing) or ``cursor_stale`` (another model version is served now: start from the first page).
A listing ends (``next_cursor`` null) when a page comes back short or ``MAX_SERVED`` movies
have been served.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from dataclasses import dataclass

from .errors import ApiError
from .filters import Filters

MAX_SERVED = 500
MAX_LENGTH = 4096
_FORMAT = 1
_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")  # URL-safe base64 without padding


@dataclass(frozen=True)
class Cursor:
    """Where a listing stands: the model version and every movie served so far, in order."""

    version: str
    listing: str
    served: tuple[int, ...] = ()


def listing(endpoint: str, subject: int, filters: Filters, diversity: float) -> str:
    """The fingerprint of one listing. ``exclude`` is not part of it: a caller may leave out
    more movies from page to page."""
    key = json.dumps([endpoint, subject, sorted(filters.include_genres), sorted(filters.exclude_genres),
                      filters.year_min, filters.year_max, round(diversity, 3)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _error(code: str, message: str) -> ApiError:
    return ApiError(400, message, code=code)


def encode(cursor: Cursor) -> str:
    doc = {"f": _FORMAT, "m": cursor.version, "l": cursor.listing, "s": list(cursor.served)}
    raw = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> Cursor:
    """The cursor in ``text``; a 400 (``cursor_malformed``) saying what to do if it is not one."""
    bad = _error("cursor_malformed", "'cursor' is malformed: pass the 'next_cursor' of the previous page "
                 "unchanged, or leave 'cursor' out for the first page")
    if len(text) > MAX_LENGTH or not _ALPHABET.match(text):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        inflate = zlib.decompressobj()
        data = inflate.decompress(raw, 1 << 16)
        if not inflate.eof or inflate.unused_data:  # cut short or with bytes added: zlib's checksum says so
            raise bad
        doc = json.loads(data)
    except (binascii.Error, ValueError, zlib.error):
        raise bad from None
    if not isinstance(doc, dict) or doc.get("f") != _FORMAT:
        raise bad
    version, fp, served = doc.get("m"), doc.get("l"), doc.get("s")
    if not isinstance(version, str) or not isinstance(fp, str) or not isinstance(served, list):
        raise bad
    if len(served) > MAX_SERVED or not all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in served):
        raise bad
    return Cursor(version, fp, tuple(served))


def resume(text: str | None, fingerprint: str, version: str) -> Cursor:
    """The listing's state for this request: a fresh one without a cursor, else the decoded
    cursor after checking it belongs to this listing and to the model version served now."""
    if text is None:
        return Cursor(version, fingerprint)
    cursor = decode(text)
    if cursor.listing != fingerprint:
        raise _error("cursor_mismatch", "'cursor' was made for another listing (another user or movie, other "
                     "genres, years or diversity): keep the parameters of the first page, or leave 'cursor' out")
    if cursor.version != version:
        raise _error("cursor_stale", f"'cursor' was made for model version {cursor.version}, and "
                     f"{version} is served now: start again from the first page (leave 'cursor' out)")
    return cursor


def next_cursor(cursor: Cursor, page: list[int], k: int) -> str | None:
    """The cursor after ``page``; None when the listing has ended (a short page, or MAX_SERVED)."""
    served = cursor.served + tuple(page)
    if len(page) < k or len(served) >= MAX_SERVED:
        return None
    return encode(Cursor(cursor.version, cursor.listing, served))
