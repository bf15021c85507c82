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
# Most characteristic genre first: MovieLens lists genres alphabetically, so without this
# every "Action|..." movie would get the same red poster.
GENRE_PRIORITY = ["Film-Noir", "Documentary", "Western", "Musical", "Animation", "War", "Horror",
                  "Sci-Fi", "Fantasy", "Mystery", "Children's", "Romance", "Crime", "Thriller",
                  "Adventure", "Comedy", "Drama", "Action"]
_STOP = {"the", "a", "an", "of", "and", "in", "on", "to", "la", "le", "les", "el", "der", "die", "das"}


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def display_title(title: str) -> str:
    """"Matrix, The (1999)" -> "The Matrix": no year (the poster shows it), article in front."""
    out = re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()
    out = re.sub(r"^(.*), (The|A|An)$", r"\2 \1", out)
    return out or title


def initials(title: str) -> str:
    """Up to two initials of the title's significant words ("The Matrix" -> "M")."""
    clean = re.sub(r"\(.*?\)", " ", title)
    # MovieLens writes "Matrix, The": drop the trailing article.
    clean = re.sub(r",\s*(The|A|An|La|Le|Les|El|Il|Das|Der|Die)$", "", clean.strip())
    words = [w for w in re.findall(r"[A-Za-z0-9]+", clean)]
    main = [w for w in words if w.lower() not in _STOP] or words
    return "".join(w[0].upper() for w in main[:2]) or "?"


def ranked(genres: list[str]) -> list[str]:
    """Known genres, most characteristic first."""
    known = [g for g in genres if g in GENRE_HUES]
    return sorted(known, key=GENRE_PRIORITY.index)


def hue(genres: list[str], title: str) -> int:
    """The main genre's hue, nudged by up to ±15° per title so neighbours differ a little."""
    top = ranked(genres)
    jitter = _digest(title) % 31 - 15
    return (GENRE_HUES[top[0]] + jitter) % 360 if top else _digest(title) % 360


def background(title: str, genres: list[str]) -> str:
    """A CSS background: a two-colour gradient plus a soft light spot."""
    top = ranked(genres)
    h1 = hue(genres, title)
    h2 = GENRE_HUES[top[1]] if len(top) > 1 else (h1 + 40) % 360
    angle = 120 + _digest(title) % 100
    return (
        "radial-gradient(circle at 30% 20%, rgba(255,255,255,0.28), transparent 55%), "
        f"linear-gradient({angle}deg, hsl({h1} 70% 42%), hsl({h2} 65% 22%))"
    )
