"""Load a Tansu broker the way the app does, to compare its storage engines (docs/local-cloud.md).

`produce`: N single-record sends (`send().get()`, acks=all, linger 0, no idempotence) from 4
threads sharing one producer; `multi`: the same with one producer (connection) per thread,
which is what makes Tansu's conditional writes conflict; `consume`: a consumer group reads the
topic from its committed offsets and commits after each poll (prints records/s; run it again
after a restart: 0 records means the offsets survived, a new --group reads everything).
"""
from __future__ import annotations

import argparse
import json
import threading
import time


def produce(boot: str, topic: str, n: int, multi: bool) -> dict:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=boot)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
        time.sleep(1)
    except TopicAlreadyExistsError:
        pass
    admin.close()

    def new():
        return KafkaProducer(bootstrap_servers=boot, enable_idempotence=False, acks="all", linger_ms=0,
                             request_timeout_ms=30000)

    shared = None if multi else new()
    ok, err, lock = [0], [0], threading.Lock()

    def worker(i: int) -> None:
        p = new() if multi else shared
        for j in range(n // 4):
            try:
                p.send(topic, f"{i}-{j}".encode()).get(timeout=60)
                with lock:
                    ok[0] += 1
            except Exception:
                with lock:
                    err[0] += 1

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.time() - t0
    return {"acked": ok[0], "errors": err[0], "secs": round(dt, 2), "acked_per_s": round(ok[0] / dt, 1)}


def consume(boot: str, topic: str, group: str, idle_s: float) -> dict:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=boot, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    got, first, last = 0, None, time.time()
    while time.time() - last < (idle_s if first else idle_s + 15):
        recs = c.poll(timeout_ms=1000, max_records=500)
        m = sum(len(v) for v in recs.values())
        if m:
            first = first or time.time()
            got += m
            c.commit()
            last = time.time()
    c.close()
    dt = (last - first) if first else 0
    return {"consumed": got, "secs": round(dt, 2), "rec_per_s": round(got / dt, 1) if dt else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("produce", "multi", "consume"))
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--topic", default="bench-storage")
    ap.add_argument("-n", type=int, default=3000, help="records to produce (default 3000)")
    ap.add_argument("--group", default="bench-storage", help="consumer group (consume)")
    ap.add_argument("--idle", type=float, default=10.0, help="consume: stop after this many idle seconds")
    a = ap.parse_args()
    out = consume(a.bootstrap, a.topic, a.group, a.idle) if a.mode == "consume" else \
        produce(a.bootstrap, a.topic, a.n, a.mode == "multi")
    print(json.dumps({"mode": a.mode, **out}))


if __name__ == "__main__":
    main()
