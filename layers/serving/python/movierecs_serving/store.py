"""S3 model store: publish artifact folders, promote one by a single PUT, load with verification.

Keys (docs/DESIGN.md): ``<prefix><version>/<file>`` and the pointer ``<prefix>CURRENT`` =
``{"version": ..., "promoted_at": ...}``. Publishing uploads every file first and the
manifest last, so a version is listed only once it is complete. Promotion is one PUT of the
tiny pointer object (atomic for readers). ``current_version()`` sends the last ETag with
``If-None-Match``, so polling the pointer costs one small conditional GET.

boto3 is not imported here: the caller passes a client (``boto3.client("s3", ...)``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from movierecs_serving.artifact import MANIFEST, ArtifactError, ModelArtifact, is_valid_version, sha256_file

CURRENT = "CURRENT"
EVALUATION = "evaluation.json"


class ModelNotFoundError(LookupError):
    """No such model version in the store (or nothing promoted yet)."""


def _error_code(e: Exception) -> str:
    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        return str(resp.get("Error", {}).get("Code", "")) or str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return ""


def _is_not_found(e: Exception) -> bool:
    return _error_code(e) in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


class ModelStore:
    """Model versions in one S3 bucket under ``prefix``."""

    #: The store's errors and version check, reachable from an instance like boto3's
    #: ``client.exceptions``: movierecs_core.admin works on the store it is given without
    #: importing movierecs_serving (core never depends on serving).
    NotFound = ModelNotFoundError
    Invalid = ArtifactError
    is_valid_version = staticmethod(is_valid_version)

    def __init__(self, s3: Any, bucket: str, prefix: str = "models/") -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._lock = threading.Lock()
        self._current_etag: str | None = None
        self._current: dict[str, Any] | None = None

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def _check(self, version: str) -> None:
        if not is_valid_version(version):
            raise ModelNotFoundError(f"{version!r} is not a model version (format YYYYMMDDTHHMMSSZ-xxxxxxxx)")

    # -- pointer -----------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        """The CURRENT pointer document, or None when nothing is promoted. Conditional GET."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(CURRENT)}
        with self._lock:
            etag, cached = self._current_etag, self._current
        if etag:
            kwargs["IfNoneMatch"] = etag
        try:
            obj = self.s3.get_object(**kwargs)
        except Exception as e:  # botocore ClientError
            code = _error_code(e)
            if code in {"304", "NotModified"}:
                return cached
            if _is_not_found(e):
                with self._lock:
                    self._current_etag, self._current = None, None
                return None
            raise
        doc = json.loads(obj["Body"].read())
        with self._lock:
            self._current_etag, self._current = obj.get("ETag"), doc
        return doc

    def current_version(self) -> str | None:
        doc = self.current()
        return doc.get("version") if doc else None

    def promote(self, version: str) -> dict[str, Any]:
        """Point CURRENT at ``version`` (one PUT); the version must be completely published."""
        self.manifest(version)  # raises ModelNotFoundError when absent
        doc = {"version": version, "promoted_at": _now()}
        self.s3.put_object(
            Bucket=self.bucket, Key=self._key(CURRENT), Body=json.dumps(doc).encode(), ContentType="application/json"
        )
        return doc

    # -- versions ----------------------------------------------------------------------
    def manifest(self, version: str) -> dict[str, Any]:
        self._check(version)
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self._key(version, MANIFEST))
        except Exception as e:
            if _is_not_found(e):
                raise ModelNotFoundError(f"model version {version} does not exist in s3://{self.bucket}/{self.prefix}") from e
            raise
        return json.loads(obj["Body"].read())

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as e:
            if _is_not_found(e):
                return None
            raise

    def put_evaluation(self, version: str, evaluation: dict[str, Any]) -> None:
        """Store the evaluate step's decision beside a version (not part of the checksummed artifact)."""
        self._check(version)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._key(version, EVALUATION),
            Body=json.dumps(evaluation, default=str).encode(),
            ContentType="application/json",
        )

    def evaluation(self, version: str) -> dict[str, Any] | None:
        self._check(version)
        return self._get_json(self._key(version, EVALUATION))

    def _keys(self) -> set[str]:
        keys: set[str] = set()
        token = None
        while True:
            kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
            if token:
                kw["ContinuationToken"] = token
            resp = self.s3.list_objects_v2(**kw)
            keys.update(o["Key"] for o in resp.get("Contents", []))
            if not resp.get("IsTruncated"):
                return keys
            token = resp.get("NextContinuationToken")

    def list_versions(self) -> list[dict[str, Any]]:
        """Completely published versions, newest first:
        ``{"version", "created_at", "promoted", "status", "metrics", "data", "hyperparameters"}``.
        status: ``promoted`` (CURRENT), ``rejected`` (the evaluate step said no) or ``available``."""
        keys = self._keys()
        current = self.current_version()
        out = []
        for key in keys:
            rest = key[len(self.prefix):]
            if not rest.endswith("/" + MANIFEST):
                continue
            version = rest[: -len(MANIFEST) - 1]
            if not is_valid_version(version):
                continue
            m = self._get_json(key) or {}
            ev = self._get_json(self._key(version, EVALUATION)) if self._key(version, EVALUATION) in keys else None
            status = "promoted" if version == current else ("rejected" if ev and ev.get("promote") is False else "available")
            out.append(
                {
                    "version": version,
                    "created_at": m.get("created_at"),
                    "promoted": version == current,
                    "status": status,
                    "metrics": m.get("metrics", {}),
                    "data": m.get("data", {}),
                    "hyperparameters": m.get("hyperparameters", {}),
                    "evaluation": ev,
                }
            )
        out.sort(key=lambda d: d["version"], reverse=True)
        return out

    def publish(self, local_dir: str | os.PathLike[str]) -> str:
        """Upload a local artifact folder (verified first): every file, then the manifest last."""
        art = ModelArtifact.load(local_dir)  # refuses a corrupt folder before anything is uploaded
        root = Path(local_dir)
        version = art.version
        for name in sorted(art.manifest["files"]):
            with open(root / name, "rb") as f:
                self.s3.put_object(Bucket=self.bucket, Key=self._key(version, name), Body=f.read())
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._key(version, MANIFEST),
            Body=(root / MANIFEST).read_bytes(),
            ContentType="application/json",
        )
        return version

    def load(self, version: str | None, cache_dir: str | os.PathLike[str]) -> ModelArtifact:
        """Download (or reuse from ``cache_dir``) and verify a version; None = the promoted one."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise ModelNotFoundError(f"no model is promoted in s3://{self.bucket}/{self.prefix} (no {CURRENT})")
        self._check(version)
        dest = Path(cache_dir) / version
        if (dest / MANIFEST).is_file():
            try:
                return ModelArtifact.load(dest)
            except ArtifactError:
                shutil.rmtree(dest, ignore_errors=True)
        elif dest.exists():
            shutil.rmtree(dest, ignore_errors=True)  # an unfinished folder from elsewhere
        manifest = self.manifest(version)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{version}-"))
        try:
            for name, digest in manifest.get("files", {}).items():
                if "/" in name or name.startswith("."):
                    raise ArtifactError(f"manifest of {version} lists a bad file name {name!r}")
                try:
                    body = self.s3.get_object(Bucket=self.bucket, Key=self._key(version, name))["Body"].read()
                except Exception as e:
                    if _is_not_found(e):
                        raise ArtifactError(f"model {version}: {name} is in the manifest but not in S3") from e
                    raise
                (tmp / name).write_bytes(body)
                if sha256_file(tmp / name) != digest:
                    raise ArtifactError(f"model {version}: {name} downloaded from S3 does not match its sha256")
            (tmp / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
            art_check = ModelArtifact.load(tmp)
            del art_check
            try:
                os.replace(tmp, dest)
            except OSError:  # another process finished first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
            return ModelArtifact.load(dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
