"""recommend: the read side of the public API. Routes only; the logic is movierecs_core.service.

One execution environment keeps one model (reloaded when models/CURRENT moves) and one
PostgreSQL connection (the catalogue and each user's serving state) across invocations.
"""
from __future__ import annotations

from movierecs_core import controls, service
from movierecs_core.catalog import Catalog
from movierecs_core.config import settings
from movierecs_core.stores.aws import s3_client
from movierecs_core.stores.postgres import Postgres
from movierecs_core.validation import parse_bounded, parse_id
from movierecs_core.web import ApiApp, json_response
from movierecs_serving import ModelHolder, ModelStore

cfg = settings()


def _store() -> ModelStore:
    return ModelStore(s3_client(), cfg.model_bucket, prefix=cfg.model_prefix)


models = ModelHolder(_store, cfg.model_cache_dir, check_seconds=cfg.model_check_seconds)
db = Postgres(cfg.postgres_dsn)
reads = service.Reads(models=models, catalog=Catalog(db), state=db, exploration=cfg.exploration_share)
app = ApiApp("movierecs-recommend", "recommend", model_version=lambda: models.version or "")
tracer = app.tracer


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
    return json_response(service.recommendations(reads, user_id, k, controls.from_query(app.query)))


@app.route("/movies/{movie_id}", methods=["GET"])
def movie(movie_id):
    return json_response(service.movie(reads, parse_id("movie_id", movie_id)))


@app.route("/movies/{movie_id}/similar", methods=["GET"])
def similar(movie_id):
    mid = parse_id("movie_id", movie_id)
    k = parse_bounded("k", app.query("k"), 1, 100, 10)
    raw_user = app.query("user_id")
    user = parse_id("user_id", raw_user) if raw_user is not None else None
    return json_response(service.similar(reads, mid, k, controls.from_query(app.query), user_id=user))


@app.route("/users/{user_id}/likes", methods=["GET"])
def user_likes(user_id):
    uid = parse_id("user_id", user_id)
    limit = parse_bounded("limit", app.query("limit"), 1, 1000, 50)
    return json_response(service.likes(reads, uid, limit))
