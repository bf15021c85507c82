"""Posters drawn locally from a movie's title, year and genres (nothing is downloaded).

A poster is a CSS gradient whose two colours come from the movie's first genres, turned
by an angle derived from the title, with the title's initials on top. Deterministic, so
the same movie always gets the same poster.
"""
from __future__ import annotations

import hashlib
import re

# One hue per MovieLens genre, chosen so neighbouring genres read as different.
GENRE_HUES: dict[str, int] = {
    "Action": 8, "Adventure": 28, "Animation": 48, "Children's": 62, "Comedy": 45,
    "Crime": 350, "Documentary": 190, "Drama": 265, "Fantasy": 290, "Film-Noir": 220,
    "Horror": 0, "Musical": 320, "Mystery": 240, "Romance": 335, "Sci-Fi": 180,
    "Thriller": 205, "War": 95, "Western": 35,
}
_STOP = {"the", "a", "an", "of", "and", "in", "on", "to", "la", "le", "les", "el", "der", "die", "das"}


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def initials(title: str) -> str:
    """Up to two initials of the title's significant words ("The Matrix" -> "M")."""
    clean = re.sub(r"\(.*?\)", " ", title)
    # MovieLens writes "Matrix, The": drop the trailing article.
    clean = re.sub(r",\s*(The|A|An|La|Le|Les|El|Il|Das|Der|Die)$", "", clean.strip())
    words = [w for w in re.findall(r"[A-Za-z0-9]+", clean)]
    main = [w for w in words if w.lower() not in _STOP] or words
    return "".join(w[0].upper() for w in main[:2]) or "?"


def hue(genres: list[str], title: str) -> int:
    for g in genres:
        if g in GENRE_HUES:
            return GENRE_HUES[g]
    return _digest(title) % 360


def background(title: str, genres: list[str]) -> str:
    """A CSS background: a two-colour gradient plus a soft light spot."""
    h1 = hue(genres, title)
    h2 = GENRE_HUES.get(genres[1], (h1 + 40) % 360) if len(genres) > 1 else (h1 + 40) % 360
    angle = 120 + _digest(title) % 100
    return (
        "radial-gradient(circle at 30% 20%, rgba(255,255,255,0.28), transparent 55%), "
        f"linear-gradient({angle}deg, hsl({h1} 70% 42%), hsl({h2} 65% 22%))"
    )
