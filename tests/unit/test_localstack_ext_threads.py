"""PruningThreadList: finished threads leave LocalStack's TMP_THREADS, live ones stay.

(On Python 3.13 a finished thread still referenced keeps its stack mapped; see
infra/localstack_ext/movierecs_localstack/threads.py. The effect on maps is checked against
the real LocalStack in tests/integration/test_localstack_threads.py.)
"""

from __future__ import annotations

import threading

from movierecs_localstack.threads import PRUNE_EVERY, PruningThreadList


def _finished_thread() -> threading.Thread:
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return t


def test_finished_threads_are_dropped_and_live_ones_kept() -> None:
    stop = threading.Event()
    live = threading.Thread(target=stop.wait, daemon=True)
    live.start()
    try:
        registry = PruningThreadList()
        registry.append(live)
        marker = object()  # not a thread (e.g. a process wrapper): never dropped
        registry.append(marker)
        for _ in range(PRUNE_EVERY * 5):
            registry.append(_finished_thread())
        assert live in registry and marker in registry
        assert len(registry) <= PRUNE_EVERY + 2
        registry.prune()
        assert registry == [live, marker]
    finally:
        stop.set()
        live.join()


def test_identity_is_kept_by_prune() -> None:
    registry = PruningThreadList([_finished_thread() for _ in range(3)])
    same = registry
    registry.prune()
    assert same is registry and registry == []
