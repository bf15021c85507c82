"""One module per store (ClickHouse, PostgreSQL, Kafka, AWS): its URL parsing, its client
factory and every statement the project runs on it.

Why one home per store: a second factory for the same store drifts (one read the database
from the URL, another ignored it), and a table's SQL spread over several modules is hard to
change. A client that cannot reach its store raises ``Unavailable``, which says nothing about
HTTP: the web layer (``movierecs_core.web``, and the read/admin logic that answers for it)
alone turns it into a 503; the consumer lets it propagate so the batch is retried.
"""
from __future__ import annotations


class Unavailable(Exception):
    """A store did not answer (down, restarting, timed out); retrying later may work.

    The message names the store and says what was (not) done, for the client to read.
    """


__all__ = ["Unavailable"]
