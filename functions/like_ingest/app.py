"""like_ingest: POST /likes and POST /feedback -> Kafka topic ``interactions`` (202 only after the broker's ack)."""
from __future__ import annotations

from movierecs_core.catalog import Catalog
from movierecs_core.config import settings
from movierecs_core.events import FeedbackEvent
from movierecs_core.ingest import MAX_BODY, Ingest, accept_feedback, accept_like
from movierecs_core.stores import kafka
from movierecs_core.stores.postgres import Postgres
from movierecs_core.web import ApiApp, json_response

cfg = settings()


def _send(event: FeedbackEvent):
    return kafka.send_and_wait(cfg.kafka_bootstrap, cfg.kafka_topic, event.key_bytes(), event.to_bytes())


ingest = Ingest(catalog=Catalog(Postgres(cfg.postgres_dsn)), send=_send)
app = ApiApp("movierecs-like-ingest", "like_ingest")


@app.route("/likes", methods=["POST"])
def post_like():
    body = app.json_body(max_bytes=MAX_BODY)
    return json_response(accept_like(ingest, body), status=202)


@app.route("/feedback", methods=["POST"])
def post_feedback():
    body = app.json_body(max_bytes=MAX_BODY)
    return json_response(accept_feedback(ingest, body), status=202)
