"""One module per store (ClickHouse, PostgreSQL, AWS, Kafka): its URL parsing, its client
factory and every statement the project runs on it.

Why one home per store: a second factory for the same store drifts (one read the database
from the URL, another ignored it), and a table's SQL spread over several modules is hard to
change. Clients raise the neutral ``movierecs_core.errors.Unavailable`` when the store does
not answer; only the web layer turns that into HTTP 503.
"""
