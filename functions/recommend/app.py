"""recommend: the read side of the public API (Chalice app; routes only, logic in movierecs_core)."""
from chalice import Chalice, Response

app = Chalice(app_name="movierecs-recommend")


@app.route("/health", methods=["GET"])
def health() -> Response:
    """Liveness plus the model version this environment serves."""
    return Response(body={"status": "ok", "model_version": ""}, status_code=200)
