"""A loopback ClickHouse HTTP endpoint over chDB.

Why: no modern ClickHouse server can be installed on these machines, and a chDB data
directory can be opened by one process only. This small server owns the data directory
and speaks enough of the ClickHouse HTTP protocol that ``clickhouse-connect`` (and curl)
work against it exactly as against a real server, so every process of the project
(functions, consumer, training, tests) shares one durable ClickHouse.

Run: ``python -m chdb_http --port 18123 --data-dir .movierecs/data/clickhouse``.
"""

__all__ = ["engine", "protocol", "server"]
