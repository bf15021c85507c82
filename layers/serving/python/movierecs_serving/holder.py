"""The promoted model of an execution environment, refreshed when ``models/CURRENT`` moves.

Loaded once per environment from the store (``ModelStore``). Each request may call ``get()``;
the pointer is re-read at most every ``check_seconds`` (one conditional GET, 304 when
unchanged), and a new version is downloaded, verified and swapped in. If the store fails
while a model is loaded, the loaded model keeps serving (and the failure is logged).

Why here and not in movierecs_core: the holder is about models only, and keeping it beside
``Recommender`` lets the web layer depend on serving's interface without serving knowing
about HTTP. ``ModelUnavailable`` is neutral; the web layer turns it into a 503.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from movierecs_serving.artifact import ModelArtifact
from movierecs_serving.recommender import Recommender

log = logging.getLogger("movierecs.models")

#: A version that failed to load is not retried before this many seconds.
RETRY_FAILED_SECONDS = 30.0


class ModelUnavailable(Exception):
    """No model can be served: none promoted yet, or the store unreachable before the first load."""


class ModelSource(Protocol):
    """The part of ``ModelStore`` the holder uses (tests pass a fake over local folders)."""

    def current_version(self) -> str | None: ...

    def load(self, version: str, cache_dir: str | os.PathLike[str]) -> ModelArtifact: ...


class ModelHolder:
    """Keeps one ``Recommender`` current with the store's pointer."""

    #: Reachable from an instance, so callers that do not import movierecs_serving catch it.
    Unavailable = ModelUnavailable

    def __init__(
        self,
        store_factory: Callable[[], ModelSource],
        cache_dir: str,
        check_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store_factory = store_factory
        self._store: ModelSource | None = None
        self._cache_dir = cache_dir
        self._check_seconds = check_seconds
        self._clock = clock
        self._recommender: Recommender | None = None
        self._version: str | None = None
        self._checked_at = -1e18
        self._failed: tuple[str, float] | None = None  # (version, when)
        self._lock = threading.Lock()
        self._other: tuple[str, Recommender] | None = None  # one more version (an experiment's arm)

    @property
    def store(self) -> ModelSource:
        """The store, built on first use (an S3 client costs ~0.1 s; health checks need none)."""
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    @property
    def version(self) -> str | None:
        """The version being served (None before the first load)."""
        return self._version

    def get(self) -> Recommender:
        """The current Recommender; raises ``ModelUnavailable`` when no model can be served."""
        with self._lock:
            if self._recommender is None or self._clock() - self._checked_at >= self._check_seconds:
                self._refresh()
            if self._recommender is None:
                raise ModelUnavailable(
                    "no model is loaded yet (none promoted, or the model store is unreachable); retry shortly")
            return self._recommender

    def get_version(self, version: str) -> Recommender:
        """A given version: the current one, or one more kept beside it (an experiment serves
        two versions at once). Raises ``ModelUnavailable`` when it cannot be loaded."""
        current = self.get()
        if version == self._version:
            return current
        with self._lock:
            if self._other is None or self._other[0] != version:
                try:
                    artifact = self.store.load(version, self._cache_dir)
                except Exception as exc:
                    raise ModelUnavailable(f"model {version} cannot be loaded: {exc}") from exc
                self._other = (version, Recommender(artifact))
                log.info("serving model %s beside %s", version, self._version)
            return self._other[1]

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        try:
            target = self.store.current_version()
        except Exception as exc:
            log.warning("model pointer check failed: %s", exc)
            return
        if target is None or target == self._version:
            return
        if self._failed and self._failed[0] == target and self._clock() - self._failed[1] < RETRY_FAILED_SECONDS:
            return
        self._load(target)

    def _load(self, version: str) -> None:
        try:
            artifact = self.store.load(version, self._cache_dir)
        except Exception as exc:
            self._failed = (version, self._clock())
            log.error("could not load model %s (still serving %s): %s", version, self._version, exc)
            return
        self._recommender = Recommender(artifact)
        self._version = version
        log.info("serving model %s", version)
