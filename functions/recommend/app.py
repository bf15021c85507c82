"""recommend: the read side of the public API. Routes only; the logic is movierecs_core.service.

One execution environment keeps one model (reloaded when models/CURRENT moves) and one
PostgreSQL connection (the catalogue and each user's serving state) across invocations.
"""
from __future__ import annotations

import uuid
from typing import Any

from movierecs_core import controls, experiments, impressions, service
from movierecs_core.catalog import Catalog
from movierecs_core.config import settings
from movierecs_core.stores import kafka
from movierecs_core.stores.aws import s3_client
from movierecs_core.stores.postgres import Postgres, running_experiment
from movierecs_core.validation import parse_bounded, parse_id
from chalice import Response

from movierecs_core.web import ApiApp, json_response
from movierecs_serving import ModelHolder, ModelStore

cfg = settings()


def _store() -> ModelStore:
    return ModelStore(s3_client(), cfg.model_bucket, prefix=cfg.model_prefix)


models = ModelHolder(_store, cfg.model_cache_dir, check_seconds=cfg.model_check_seconds)
db = Postgres(cfg.postgres_dsn)
running = experiments.Running(lambda: running_experiment(db))  # re-read every 2 s
reads = service.Reads(models=models, catalog=Catalog(db), state=db, experiment=running.get,
                      exploration=cfg.exploration_share)
app = ApiApp("movierecs-recommend", "recommend", model_version=lambda: models.version or "")
tracer = app.tracer
shown = impressions.publisher(lambda batch: kafka.send_batch(cfg.kafka_bootstrap, cfg.impressions_topic, batch)) \
    if cfg.impressions_enabled else None


def _served(listing: str, body: dict[str, Any]) -> Response:
    """Queue the list's impression (no I/O on the request path) and answer it."""
    if shown is not None:
        shown.record(impressions.of_listing(app.request_id() or uuid.uuid4().hex, listing, body))
    return json_response(body)


@app.route("/health", methods=["GET"])
def health():
    """Liveness plus the model version this environment serves."""
    return json_response(service.health(reads))


@app.route("/noop", methods=["GET"])
def noop():
    """No I/O at all: the API Gateway + Lambda + Chalice baseline for bench/api.py (not in the contract)."""
    return json_response({"status": "ok"})


@app.route("/recommendations", methods=["GET"])
@tracer.capture_method
def recommendations():
    user_id = parse_id("user_id", app.query("user_id"))
    k = parse_bounded("k", app.query("k"), 1, 100, 10)
    return _served("recommendations", service.recommendations(reads, user_id, k, controls.from_query(app.query)))


@app.route("/movies/{movie_id}", methods=["GET"])
def movie(movie_id):
    return json_response(service.movie(reads, parse_id("movie_id", movie_id)))


@app.route("/movies/{movie_id}/similar", methods=["GET"])
def similar(movie_id):
    mid = parse_id("movie_id", movie_id)
    k = parse_bounded("k", app.query("k"), 1, 100, 10)
    raw_user = app.query("user_id")
    user = parse_id("user_id", raw_user) if raw_user is not None else None
    return _served("similar", service.similar(reads, mid, k, controls.from_query(app.query), user_id=user))


@app.route("/users/{user_id}/likes", methods=["GET"])
def user_likes(user_id):
    uid = parse_id("user_id", user_id)
    limit = parse_bounded("limit", app.query("limit"), 1, 1000, 50)
    return json_response(service.likes(reads, uid, limit))
