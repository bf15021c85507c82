"""admin: model reload/retrain/listing, usage stats, recent errors, forgetting a user and adding or hiding
movies (admin key required)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from movierecs_core import admin, catalog_admin, experiments, forget, online
from movierecs_core.config import settings
from movierecs_core.errors import bad_request
from movierecs_core.stores.aws import Clients
from movierecs_core.stores.clickhouse import get_client, like_rates, reset_client
from movierecs_core.stores.postgres import Postgres
from movierecs_core.validation import parse_bounded, parse_id
from movierecs_core.web import ApiApp, json_response
from movierecs_serving import ModelStore

cfg = settings()
app = ApiApp("movierecs-admin", "admin")
_clients = Clients()  # boto3 clients created on first use (they cost ~0.1 s each to build)
_stores: list[ModelStore] = []
db = Postgres(cfg.postgres_dsn)  # experiments, forgetting users, the catalogue's admin writes (opened on first use)


def _store() -> ModelStore:
    if not _stores:
        _stores.append(ModelStore(_clients["s3"], cfg.model_bucket, prefix=cfg.model_prefix))
    return _stores[0]


def _authorize() -> None:
    admin.check_key(app.current_request.headers.get("x-api-key"), cfg.admin_api_key)


@app.route("/admin/reload", methods=["POST"])
def reload():
    _authorize()
    body = app.json_body(max_bytes=4096, required=False)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise bad_request('the body must be a JSON object such as {"version": "20261127T031500Z-1a2b3c4d"} or empty')
    return json_response(admin.reload(_store(), body.get("version"), cfg.model_cache_dir))


@app.route("/admin/retrain", methods=["POST"])
def retrain():
    _authorize()
    body = app.json_body(max_bytes=4096, required=False)
    return json_response(admin.retrain(_clients["stepfunctions"], cfg.state_machine_arn, body), status=202)


@app.route("/admin/models", methods=["GET"])
def models():
    _authorize()
    return json_response(admin.models(_store()))


@app.route("/admin/stats", methods=["GET"])
def stats():
    _authorize()
    minutes = parse_bounded("minutes", app.query("minutes"), 1, 1440, 60)
    series = admin.stats(get_client(cfg.clickhouse_url), minutes)
    series |= admin.feedback_stats(get_client(cfg.clickhouse_url), db, minutes)
    series["consumer_lag"] = admin.consumer_lag(cfg.kafka_bootstrap, cfg.kafka_consumer_group, cfg.kafka_topic)
    since = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    series["online"] = online.by_version(
        admin.telemetry(lambda: like_rates(get_client(cfg.clickhouse_url), since, cfg.like_window_seconds)),
        cfg.like_window_seconds)
    return json_response(series)


@app.route("/admin/experiments", methods=["POST"])
def start_experiment():
    _authorize()
    return json_response(experiments.start(db, _store(), app.json_body(max_bytes=4096)), status=201)


@app.route("/admin/experiments", methods=["GET"])
def list_experiments():
    _authorize()
    return json_response(experiments.listing(db, get_client(cfg.clickhouse_url), cfg.like_window_seconds))


@app.route("/admin/experiments/{experiment_id}", methods=["GET"])
def get_experiment(experiment_id):
    _authorize()
    return json_response(experiments.get(db, get_client(cfg.clickhouse_url), experiment_id, cfg.like_window_seconds))


@app.route("/admin/experiments/{experiment_id}/stop", methods=["POST"])
def stop_experiment(experiment_id):
    _authorize()
    decision = experiments.stop_request(app.json_body(max_bytes=4096))
    return json_response(experiments.stop(db, _store(), experiment_id, decision, cfg.model_cache_dir))


@app.route("/admin/errors", methods=["GET"])
def errors():
    _authorize()
    limit = parse_bounded("limit", app.query("limit"), 1, 500, 50)
    return json_response(admin.errors(_clients["logs"], list(cfg.function_log_groups), limit))


@app.route("/users/{user_id}", methods=["DELETE"])
def delete_user(user_id):
    _authorize()
    uid = parse_id("user_id", user_id)
    try:
        return json_response(forget.forget_user(db, get_client(cfg.clickhouse_url), uid))
    except Exception:
        reset_client(cfg.clickhouse_url)
        raise


@app.route("/admin/movies", methods=["POST"])
def add_movie():
    _authorize()
    return json_response(catalog_admin.add_movie(db, app.json_body(max_bytes=4096)), status=201)


@app.route("/admin/movies/{movie_id}", methods=["PATCH"])
def patch_movie(movie_id):
    _authorize()
    mid = parse_id("movie_id", movie_id)
    return json_response(catalog_admin.patch_movie(db, mid, app.json_body(max_bytes=4096)))
