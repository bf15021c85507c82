"""Unit tests of the telemetry recorder: buffering, flush rules, retry, bounded memory."""
from __future__ import annotations

from datetime import datetime, timezone

from movierecs_core.telemetry import Recorder, RequestRow


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def row(i: int = 0) -> RequestRow:
    return RequestRow(datetime.now(timezone.utc), "recommend", "GET /x", 200, 1.5 + i, "v", f"r{i}")


def test_flush_after_age_or_size_and_at_most_once_per_second():
    batches = []
    clock = Clock()
    rec = Recorder(batches.append, max_rows=3, max_age=1.0, min_interval=1.0, clock=clock, start_thread=False)
    rec.record(row())
    assert not rec.due()
    clock.t += 1.1
    assert rec.due() and rec.flush() == 1
    for i in range(5):
        rec.record(row(i))
    assert not rec.due()  # over max_rows but an insert happened < 1 s ago
    clock.t += 1.0
    assert rec.due() and rec.flush() == 5
    assert [len(b) for b in batches] == [1, 5]
    assert batches[0][0][1:4] == ("recommend", "GET /x", 200)


def test_failed_insert_keeps_rows_for_retry():
    calls = []

    def insert(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise ConnectionError("down")

    clock = Clock()
    rec = Recorder(insert, clock=clock, start_thread=False)
    rec.record(row(1))
    rec.record(row(2))
    assert rec.flush(force=True) == 0 and rec.pending() == 2 and rec.failures == 1
    rec.record(row(3))
    clock.t += 2
    assert rec.flush() == 3 and rec.pending() == 0


def test_buffer_is_bounded():
    rec = Recorder(lambda rows: None, max_buffer=10, start_thread=False)
    for i in range(25):
        rec.record(row(i))
    assert rec.pending() == 10 and rec.dropped == 15


def test_background_thread_flushes_without_help():
    import threading

    done = threading.Event()
    got = []

    def insert(rows):
        got.extend(rows)
        done.set()

    rec = Recorder(insert, max_age=0.05, min_interval=0.05)
    rec.record(row())
    assert done.wait(5.0)
    assert len(got) == 1
