"""s3lite: a small, disk-backed, loopback-only S3-compatible server for Tansu's storage.

Why it exists: Tansu's `s3://` storage engine issues many small conditional writes
(If-Match / If-None-Match PutObject) and listings; LocalStack's S3 answers them slowly and
degrades as objects accumulate, so the broker collapsed under load. s3lite implements only
what Tansu uses, keeps a sorted in-memory key index (listing is O(log n + k)) and stores
every object as one file written atomically (temp file + os.replace), so the Kafka log
survives broker, s3lite and LocalStack restarts. See docs/local-cloud.md.
"""

from .server import S3LiteServer, serve

__all__ = ["S3LiteServer", "serve"]
