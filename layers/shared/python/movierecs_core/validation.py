"""Parsing of ids and bounded integers from path and query strings, with clear messages.

API Gateway hands every path and query value over as text; these helpers turn it into an
int or raise a 400 that names the parameter and the accepted range.
"""
from __future__ import annotations

import re

from .errors import bad_request

# [0-9], not \d: \d also matches other scripts' digits (fullwidth "１"), which int() accepts
_INT_RE = re.compile(r"^[+]?[0-9]{1,10}$")
MAX_ID = 2**31 - 1  # PostgreSQL int and the ClickHouse UInt32 columns both hold this


def parse_id(name: str, raw: object) -> int:
    """A positive integer id (1..2^31-1); ``raw`` is text from a path/query or a JSON value."""
    if raw is None or raw == "":
        raise bad_request(f"'{name}' is required: give a positive integer")
    if isinstance(raw, bool):
        raise bad_request(f"'{name}' must be a positive integer, not a boolean")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and _INT_RE.match(raw.strip()):
        value = int(raw.strip())
    else:
        shown = str(raw)[:40]
        raise bad_request(f"'{name}' must be a positive integer, got '{shown}'")
    if value < 1 or value > MAX_ID:
        raise bad_request(f"'{name}' must be a positive integer between 1 and {MAX_ID}, got {value}")
    return value


def parse_bounded(name: str, raw: str | None, low: int, high: int, default: int) -> int:
    """An optional integer query parameter within [low, high]; ``default`` when absent."""
    if raw is None:
        return default
    text = raw.strip()
    if not re.match(r"^[+-]?[0-9]{1,12}$", text):
        raise bad_request(f"'{name}' must be an integer between {low} and {high}, got '{raw[:40]}'")
    value = int(text)
    if value < low or value > high:
        raise bad_request(f"'{name}' must be between {low} and {high}, got {value}")
    return value



_FRACTION_RE = re.compile(r"^(?:[0-9]{1,3}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})$")


def parse_fraction(name: str, raw: str | None, default: float = 0.0) -> float:
    """An optional decimal query parameter between 0 and 1 (ASCII digits, for example 0.3)."""
    if raw is None:
        return default
    text = raw.strip()
    if not _FRACTION_RE.match(text) or not 0.0 <= float(text) <= 1.0:
        raise bad_request(f"'{name}' must be a number from 0 to 1 (for example 0.3), got '{raw[:40]}'")
    return float(text)
