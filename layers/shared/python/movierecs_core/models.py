"""The promoted model of an execution environment, refreshed when ``models/CURRENT`` moves.

Loaded once per environment from S3 (movierecs_serving.ModelStore). Each request may call
``get()``; the pointer is re-read at most every ``check_seconds`` (one conditional GET, 304
when unchanged), and a new version is downloaded, verified and swapped in. If S3 fails while
a model is loaded, the loaded model keeps serving (and the failure is logged).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import ApiError, unavailable

log = logging.getLogger("movierecs.models")


def s3_client() -> Any:
    """A boto3 S3 client (honours AWS_ENDPOINT_URL locally); path-style for LocalStack."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                                            connect_timeout=3, read_timeout=10))


class ModelHolder:
    """Keeps one movierecs_serving.Recommender current with the store's pointer."""

    def __init__(
        self,
        store_factory: Callable[[], Any],
        cache_dir: str,
        check_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store_factory = store_factory
        self._store: Any = None
        self._cache_dir = cache_dir
        self._check_seconds = check_seconds
        self._clock = clock
        self._recommender: Any = None
        self._version: str | None = None
        self._checked_at = -1e18
        self._failed: tuple[str, float] | None = None  # (version, when): a bad version is retried after 30 s
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    @property
    def version(self) -> str | None:
        """The version being served (None before the first load)."""
        return self._version

    def get(self) -> Any:
        """The current Recommender; raises 503 ApiError when no model can be served."""
        with self._lock:
            if self._recommender is None or self._clock() - self._checked_at >= self._check_seconds:
                self._refresh()
            if self._recommender is None:
                raise unavailable("no model is loaded yet (none promoted, or the model store is unreachable); retry shortly")
            return self._recommender

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        try:
            target = self.store.current_version()
        except Exception as exc:
            log.warning("model pointer check failed: %s", exc)
            return
        if target is None or target == self._version:
            return
        if self._failed and self._failed[0] == target and self._clock() - self._failed[1] < 30.0:
            return
        self._load(target)

    def _load(self, version: str) -> None:
        from movierecs_serving import Recommender

        try:
            artifact = self.store.load(version, self._cache_dir)
        except Exception as exc:
            self._failed = (version, self._clock())
            log.error("could not load model %s (still serving %s): %s", version, self._version, exc)
            return
        self._recommender = Recommender(artifact)
        self._version = version
        log.info("serving model %s", version)

    def force(self, version: str) -> str:
        """Load ``version`` now (used after the admin moved the pointer)."""
        with self._lock:
            self._checked_at = self._clock()
            if version != self._version:
                from movierecs_serving import Recommender

                self._recommender = Recommender(self.store.load(version, self._cache_dir))
                self._version = version
            return version


__all__ = ["ApiError", "ModelHolder", "s3_client"]
