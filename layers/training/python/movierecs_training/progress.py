"""Progress bars for long work (loading, backfill) that also show under ``make up``.

``make up`` runs the bootstrap with its output piped into the stack's log, so tqdm's default
(no bar when stdout is not a terminal) would show nothing for minutes. Off a terminal the
bar is printed as a new line at most every few seconds instead of redrawn in place.
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


class _Lines:
    """A file that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, out: TextIO):
        self._out = out

    def write(self, text: str) -> None:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():
                self._out.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self._out.flush()


def bar(total: int, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar on stderr (a terminal) or as lines on stdout every 3 s (a pipe); off if not ``enabled``."""
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit)
    return tqdm(total=total, desc=desc, unit=unit, file=_Lines(sys.stdout), mininterval=3.0, ascii=True, ncols=80)
