"""Kafka event source target: writes every event it receives to S3 (one object per
invocation) so the test can see exactly what was delivered; fails on purpose while a flag
object ``flags/<topic>`` exists."""

import json
import os

import boto3

S3 = boto3.client("s3")
BUCKET = os.environ["OUTPUT_BUCKET"]


def _flag_set(topic):
    try:
        S3.head_object(Bucket=BUCKET, Key=f"flags/{topic}")
        return True
    except S3.exceptions.ClientError:
        return False


def handler(event, context):
    topics = sorted({r["topic"] for recs in event.get("records", {}).values() for r in recs})
    topic = topics[0] if topics else "none"
    fail = _flag_set(topic)
    S3.put_object(Bucket=BUCKET, Key=f"kafka/{topic}/{context.aws_request_id}.json",
                  Body=json.dumps({"failed": fail, "event": event}).encode())
    if fail:
        raise RuntimeError(f"flag set for {topic}: failing on purpose")
    return {"ok": True}
