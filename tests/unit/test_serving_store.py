"""ModelStore against an in-memory fake of the S3 client calls it makes (unit test: fakes allowed)."""
from __future__ import annotations

import hashlib
import io
import json

import pytest

from movierecs_serving import ArtifactError, ModelNotFoundError, ModelStore
from test_serving_artifact import tiny


class FakeClientError(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeS3:
    """The subset of boto3's S3 client used by ModelStore, with ETags and If-None-Match."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self.calls: list[tuple[str, str, dict]] = []

    def put_object(self, Bucket, Key, Body, **kw):
        self.calls.append(("put", Key, kw))
        self.objects[(Bucket, Key)] = Body if isinstance(Body, bytes) else Body.read()
        return {"ETag": self._etag(Bucket, Key)}

    def _etag(self, b, k):
        return '"' + hashlib.md5(self.objects[(b, k)]).hexdigest() + '"'

    def get_object(self, Bucket, Key, IfNoneMatch=None, **kw):
        self.calls.append(("get", Key, {"IfNoneMatch": IfNoneMatch}))
        if (Bucket, Key) not in self.objects:
            raise FakeClientError("NoSuchKey")
        etag = self._etag(Bucket, Key)
        if IfNoneMatch == etag:
            raise FakeClientError("304")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)]), "ETag": etag}

    def list_objects_v2(self, Bucket, Prefix="", **kw):
        keys = sorted(k for b, k in self.objects if b == Bucket and k.startswith(Prefix))
        return {"Contents": [{"Key": k} for k in keys], "IsTruncated": False}


@pytest.fixture()
def s3():
    return FakeS3()


def test_publish_uploads_the_manifest_last_and_promote_is_one_put(tmp_path, s3):
    folder = tiny(tmp_path)
    store = ModelStore(s3, "bkt")
    assert store.current_version() is None
    v = store.publish(folder)
    puts = [k for op, k, _ in s3.calls if op == "put"]
    assert puts[-1] == f"models/{v}/manifest.json"
    assert set(puts) == {f"models/{v}/{n}" for n in ("model.npz", "seen.npz", "report.json", "manifest.json")}
    assert [x["status"] for x in store.list_versions()] == ["available"]
    n = len(s3.calls)
    store.promote(v)
    assert [op for op, _, _ in s3.calls[n:]].count("put") == 1
    assert json.loads(s3.objects[("bkt", "models/CURRENT")])["version"] == v
    assert store.current_version() == v
    listed = store.list_versions()
    assert listed[0]["version"] == v and listed[0]["promoted"] and listed[0]["status"] == "promoted"
    assert listed[0]["metrics"] == {"map@10": 0.1}


def test_polling_the_pointer_sends_the_etag(tmp_path, s3):
    store = ModelStore(s3, "bkt")
    v = store.publish(tiny(tmp_path))
    store.promote(v)
    assert store.current_version() == v
    assert store.current_version() == v
    last = [c for c in s3.calls if c[1] == "models/CURRENT" and c[0] == "get"][-1]
    assert last[2]["IfNoneMatch"]  # a conditional GET, answered 304 and served from the cache
    v2 = store.publish(tiny(tmp_path / "b"))
    store.promote(v2)
    assert store.current_version() == v2


def test_load_verifies_and_reuses_the_cache(tmp_path, s3):
    store = ModelStore(s3, "bkt")
    v = store.publish(tiny(tmp_path / "src"))
    store.promote(v)
    art = store.load(None, tmp_path / "cache")
    assert art.version == v and (tmp_path / "cache" / v / "manifest.json").exists()
    n = len(s3.calls)
    assert store.load(v, tmp_path / "cache").version == v
    assert all(k.endswith("CURRENT") for _, k, _ in s3.calls[n:])  # nothing downloaded again


def test_a_corrupt_object_in_s3_is_refused(tmp_path, s3):
    store = ModelStore(s3, "bkt")
    v = store.publish(tiny(tmp_path / "src"))
    s3.objects[("bkt", f"models/{v}/model.npz")] = b"garbage"
    with pytest.raises(ArtifactError, match="sha256"):
        store.load(v, tmp_path / "cache")
    assert not (tmp_path / "cache" / v).exists()


def test_unknown_or_malformed_versions(tmp_path, s3):
    store = ModelStore(s3, "bkt")
    with pytest.raises(ModelNotFoundError):
        store.promote("20200101T000000Z-deadbeef")
    with pytest.raises(ModelNotFoundError):
        store.load("../../etc", tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model is promoted"):
        store.load(None, tmp_path)


def test_an_unfinished_publish_is_not_listed(tmp_path, s3):
    store = ModelStore(s3, "bkt")
    s3.put_object(Bucket="bkt", Key="models/20200101T000000Z-deadbeef/model.npz", Body=b"x")
    assert store.list_versions() == []


def test_a_rejected_candidate_is_listed_as_rejected(tmp_path, s3):
    store = ModelStore(s3, "bkt")
    v = store.publish(tiny(tmp_path))
    store.put_evaluation(v, {"promote": False, "reason": "worse"})
    assert store.list_versions()[0]["status"] == "rejected"
    assert store.evaluation(v)["reason"] == "worse"
