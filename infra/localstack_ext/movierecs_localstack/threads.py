"""Stop LocalStack's shutdown-hook thread list from pinning every finished thread's stack.

``localstack.utils.threads.start_thread`` appends each thread it starts to the global
``TMP_THREADS`` list (so ``cleanup_threads_and_processes`` can stop it at exit) and nothing
ever removes it. LocalStack's Lambda service calls ``start_thread`` twice per invocation
(``record_cw_metric_invocation`` / ``..._error`` in ``version_manager.invoke``), Step
Functions once per execution and Map iteration.

On Python 3.11 that list only held small objects. On Python 3.13 (LocalStack's venv) a thread
is started *joinable*, and glibc releases a finished thread's stack only when it is joined or
its ``Thread`` object (its handle) is freed. A ``Thread`` kept in ``TMP_THREADS`` therefore
keeps its 8 MiB stack mapping, its guard page and its touched pages forever: measured on the
shared stack after an hour of tests and load, 32,364 such stacks (64,728 of the process's
65,530 allowed memory maps, ``vm.max_map_count``) for 577 live threads; then every new
thread fails with ``RuntimeError: can't start new thread`` (Lambda invocations fail; another
instance that died this way had ~10 GB RSS and its API Gateway answered 502).

The fix keeps the list's purpose (stop *live* threads at exit) and drops finished threads
whenever a new one is registered, so the list stays as long as the number of live threads.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

#: Prune only when the list has grown by this many entries since the last prune (amortized O(1)).
PRUNE_EVERY = 32


def _finished(entry: Any) -> bool:
    is_alive = getattr(entry, "is_alive", None)
    return callable(is_alive) and not is_alive()


class PruningThreadList(list):
    """A ``list`` whose ``append`` first drops threads that have ended.

    Dropping the last reference to a finished ``Thread`` frees its handle, which detaches the
    native thread and lets glibc release its stack.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._lock = threading.Lock()
        self._pruned_len = 0

    def append(self, entry: Any) -> None:  # noqa: D102 - list.append with pruning
        with self._lock:
            if len(self) - self._pruned_len >= PRUNE_EVERY:
                self.prune()
            super().append(entry)

    def prune(self) -> None:
        """Remove every finished thread (in place: the object identity is what callers hold)."""
        self[:] = [entry for entry in self if not _finished(entry)]
        self._pruned_len = len(self)


def release_finished_threads() -> None:
    """Replace ``localstack.utils.threads.TMP_THREADS`` with a :class:`PruningThreadList`.

    Modules that did ``from localstack.utils.threads import TMP_THREADS`` before this hook
    ran hold the old list: they are rebound too. Idempotent.
    """
    from localstack.utils import threads as ls_threads

    old = ls_threads.TMP_THREADS
    if isinstance(old, PruningThreadList):
        return
    new = PruningThreadList(old)
    for module in list(sys.modules.values()):
        # the module's own namespace: getattr could run a lazy module's __getattr__
        if getattr(module, "__dict__", {}).get("TMP_THREADS") is old:
            module.TMP_THREADS = new
    ls_threads.TMP_THREADS = new
