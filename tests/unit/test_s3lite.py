"""s3lite, the S3 server Tansu stores the Kafka log in: conditional puts, listing, durability.

The server runs in-process on an ephemeral port; boto3 is the client (it parses the XML the
way an SDK does), raw urllib where a header must be exact.
"""
from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from s3lite import serve


@pytest.fixture()
def server(tmp_path: Path):
    srv, t = serve(tmp_path / "data")
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


def client(srv):
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{srv.port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def status_of(fn) -> int:
    with pytest.raises(ClientError) as ei:
        fn()
    return ei.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_conditional_puts_follow_s3_semantics(server):
    s3 = client(server)
    s3.create_bucket(Bucket="tansu")
    first = s3.put_object(Bucket="tansu", Key="w.json", Body=b"v1", IfNoneMatch="*")["ETag"]
    assert first == '"6654c734ccab8f440ff0825eb443dc7f"'  # md5("v1"), quoted
    assert status_of(lambda: s3.put_object(Bucket="tansu", Key="w.json", Body=b"x", IfNoneMatch="*")) == 412
    assert status_of(lambda: s3.put_object(Bucket="tansu", Key="w.json", Body=b"x", IfMatch='"0000"')) == 412
    second = s3.put_object(Bucket="tansu", Key="w.json", Body=b"v2", IfMatch=first)["ETag"]
    assert s3.get_object(Bucket="tansu", Key="w.json")["Body"].read() == b"v2"
    assert status_of(lambda: s3.put_object(Bucket="tansu", Key="w.json", Body=b"v3", IfMatch=first)) == 412
    assert status_of(lambda: s3.put_object(Bucket="tansu", Key="missing", Body=b"x", IfMatch=second)) == 404
    assert s3.head_object(Bucket="tansu", Key="w.json")["ContentLength"] == 2


def test_concurrent_if_match_updates_lose_nothing(server):
    """Many writers doing read-modify-write with If-Match: every increment lands exactly once."""
    s3 = client(server)
    s3.create_bucket(Bucket="tansu")
    s3.put_object(Bucket="tansu", Key="counter", Body=b"0")
    wins = []

    def worker():
        c = client(server)
        done = 0
        while done < 25:
            obj = c.get_object(Bucket="tansu", Key="counter")
            n = int(obj["Body"].read())
            try:
                c.put_object(Bucket="tansu", Key="counter", Body=str(n + 1).encode(), IfMatch=obj["ETag"])
                done += 1
            except ClientError as e:
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        wins.append(done)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(wins) == 150
    assert s3.get_object(Bucket="tansu", Key="counter")["Body"].read() == b"150"


def test_get_conditions_and_range(server):
    s3 = client(server)
    s3.create_bucket(Bucket="b1b")
    etag = s3.put_object(Bucket="b1b", Key="k", Body=b"0123456789")["ETag"]
    base = f"http://127.0.0.1:{server.port}/b1b/k"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(base, headers={"If-None-Match": etag}))
    assert ei.value.code == 304
    with urllib.request.urlopen(urllib.request.Request(base, headers={"Range": "bytes=2-4"})) as r:
        assert r.status == 206 and r.read() == b"234" and r.headers["Content-Range"] == "bytes 2-4/10"
    assert s3.get_object(Bucket="b1b", Key="k", Range="bytes=-3")["Body"].read() == b"789"
    assert status_of(lambda: s3.get_object(Bucket="b1b", Key="nope")) == 404
    assert status_of(lambda: s3.get_object(Bucket="nobucket", Key="k")) == 404


def test_list_v2_prefix_delimiter_pagination_and_deletes(server):
    s3 = client(server)
    s3.create_bucket(Bucket="tansu")
    keys = [f"t/p{p}/records/{i:020d}.batch" for p in range(2) for i in range(25)] + ["t/p0/watermark.json", "u"]
    for k in keys:
        s3.put_object(Bucket="tansu", Key=k, Body=k.encode())
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket="tansu", Prefix="t/p0/records/",
                                                               PaginationConfig={"PageSize": 7}))
    listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert listed == sorted(k for k in keys if k.startswith("t/p0/records/")) and len(pages) == 4
    r = s3.list_objects_v2(Bucket="tansu", Prefix="t/", Delimiter="/")
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == ["t/p0/", "t/p1/"] and "Contents" not in r
    r = s3.list_objects_v2(Bucket="tansu", Prefix="t/p0/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["t/p0/watermark.json"]
    assert [c["Prefix"] for c in r["CommonPrefixes"]] == ["t/p0/records/"]
    r = s3.list_objects_v2(Bucket="tansu", Prefix="t/p1/records/", StartAfter=keys[47])
    assert [o["Key"] for o in r["Contents"]] == keys[48:50]
    s3.delete_object(Bucket="tansu", Key="u")
    s3.delete_objects(Bucket="tansu", Delete={"Objects": [{"Key": k} for k in keys[:25]]})
    r = s3.list_objects_v2(Bucket="tansu", Prefix="t/p0/")
    assert [o["Key"] for o in r["Contents"]] == ["t/p0/watermark.json"]
    assert status_of(lambda: s3.head_object(Bucket="tansu", Key="u")) == 404


def test_objects_survive_a_restart(tmp_path: Path):
    data = tmp_path / "data"
    srv, t = serve(data)
    s3 = client(srv)
    s3.create_bucket(Bucket="tansu")
    etag = s3.put_object(Bucket="tansu", Key="a/b", Body=b"kept")["ETag"]
    s3.put_object(Bucket="tansu", Key="a/gone", Body=b"x")
    s3.delete_object(Bucket="tansu", Key="a/gone")
    srv.shutdown()
    srv.server_close()
    t.join(5)

    srv, t = serve(data)
    try:
        s3 = client(srv)
        s3.head_bucket(Bucket="tansu")
        obj = s3.get_object(Bucket="tansu", Key="a/b")
        assert obj["Body"].read() == b"kept" and obj["ETag"] == etag
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="tansu")["Contents"]] == ["a/b"]
        # the etag survives too, so an If-Match update after the restart still works
        s3.put_object(Bucket="tansu", Key="a/b", Body=b"new", IfMatch=etag)
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_unsupported_calls_get_a_clear_4xx_or_501(server):
    base = f"http://127.0.0.1:{server.port}"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(f"{base}/Bad_Name", method="PUT"))
    assert ei.value.code == 400 and b"InvalidBucketName" in ei.value.read()
    urllib.request.urlopen(urllib.request.Request(f"{base}/tansu", method="PUT"))
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"{base}/tansu")  # ListObjects v1
    assert ei.value.code == 501 and b"list-type=2" in ei.value.read()
