"""Chalice glue shared by the API functions: the contract's error shape, body parsing, and
per-request logging, metrics and telemetry.

``ApiApp`` is a Chalice app whose routes
- turn an ``ApiError`` into ``{"error": ...}`` with its status, a store's ``Unavailable`` into
  a 503 with its message, and any other exception into a logged 500 ``{"error": ...}`` naming
  the request id (no traceback to the client);
- accept any Content-Type (the body is parsed as JSON by ``json_body``, which gives clear 400/413);
and whose middleware rewrites Chalice's own error bodies (``{"Code", "Message"}``: 405, 415,
...) to the contract's shape, and records each request (log line, EMF metrics, ClickHouse
telemetry via a background ``telemetry.Recorder``).
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from chalice import Chalice, Response

from .config import settings
from .errors import ApiError, bad_request, from_unavailable
from .observability import make_tools
from .stores import Unavailable
from .telemetry import Recorder, RequestRow, clickhouse_insert, now_utc

JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response (Chalice serializes dict bodies)."""
    return Response(body=body, status_code=status, headers=dict(JSON_HEADERS))


def error_response(status: int, message: str) -> Response:
    """The contract's error body."""
    return json_response({"error": message}, status)


class ApiApp(Chalice):
    """A Chalice app with the project's error handling, observability and telemetry."""

    def __init__(self, app_name: str, function: str, model_version: Callable[[], str] | None = None):
        super().__init__(app_name=app_name)
        self.function = function
        self.logger, self.metrics, self.tracer = make_tools(function)
        self.model_version = model_version or (lambda: "")
        self._recorder: Recorder | None = None
        self.register_middleware(self._observe, "http")

    # -- routes ---------------------------------------------------------------------------
    def route(self, path: str, **kwargs: Any) -> Callable[..., Any]:
        kwargs.setdefault("content_types", ["*/*"])
        register = super().route(path, **kwargs)

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def guarded(*args: Any, **kw: Any) -> Any:
                try:
                    return view(*args, **kw)
                except (ApiError, Unavailable) as exc:
                    err = exc if isinstance(exc, ApiError) else from_unavailable(exc)
                    if err.status >= 500:
                        cause = exc.__cause__ if isinstance(exc, ApiError) else exc
                        self.logger.error("dependency failure: %s", err.message, exc_info=cause or False)
                    return json_response(err.body(), err.status)
                except Exception:
                    rid = self.request_id()
                    self.logger.exception("unhandled error in %s %s", path, kwargs.get("methods", ["GET"]))
                    return error_response(500, f"internal error (request id {rid}); the details are in the function's log")

            register(guarded)
            return view

        return decorator

    # -- request helpers ------------------------------------------------------------------
    def request_id(self) -> str:
        """The invocation's request id ("" outside Lambda)."""
        ctx = getattr(self, "lambda_context", None)
        return str(getattr(ctx, "aws_request_id", "") or "")

    def query(self, name: str) -> str | None:
        """One query-string value (the last one if repeated), or None."""
        params = self.current_request.query_params if self.current_request else None
        return params.get(name) if params else None

    def json_body(self, max_bytes: int = 4096, required: bool = True) -> Any:
        """The request body parsed as JSON, with 413 for > ``max_bytes`` and 400 for bad JSON."""
        raw = self.current_request.raw_body if self.current_request else b""
        if raw is None:
            raw = b""
        if len(raw) > max_bytes:
            raise ApiError(413, f"the request body is {len(raw)} bytes; at most {max_bytes} bytes are accepted")
        if not raw.strip():
            if required:
                raise bad_request("the request body is empty: send a JSON object")
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise bad_request("the request body is not UTF-8 text: send a JSON object") from None
        except ValueError as exc:
            raise bad_request(f"the request body is not valid JSON ({exc.msg} at character {exc.pos})") from None
        except RecursionError:  # e.g. 4,000 nested "[": the decoder recurses once per level
            raise bad_request("the request body is nested too deeply: send a flat JSON object") from None

    # -- middleware -----------------------------------------------------------------------
    def _observe(self, event: Any, get_response: Callable[[Any], Response]) -> Response:
        start = time.perf_counter()
        ctx = event.context if event is not None else {}
        route = (ctx or {}).get("resourcePath", "?")
        method = getattr(event, "method", "?")
        rid = self.request_id()
        self.logger.append_keys(request_id=rid, route=f"{method} {route}")
        response = get_response(event)
        body = response.body
        if isinstance(body, dict) and "Code" in body and "Message" in body and "error" not in body:
            response = error_response(response.status_code, str(body["Message"]))
        latency_ms = (time.perf_counter() - start) * 1000.0
        status = int(response.status_code)
        try:
            version = self.model_version() or ""
        except Exception:
            version = ""
        self.logger.info(
            f"{method} {route} {status} {latency_ms:.1f}ms",
            extra={"status": status, "latency_ms": round(latency_ms, 2), "model_version": version},
        )
        self._emit_metrics(route, status, latency_ms)
        if settings().telemetry_enabled:
            self.recorder().record(
                RequestRow(now_utc(), self.function, f"{method} {route}", status, latency_ms, version, rid)
            )
        return response

    def _emit_metrics(self, route: str, status: int, latency_ms: float) -> None:
        try:
            self.metrics.add_dimension(name="route", value=route)
            self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
            self.metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
            if status >= 500:
                self.metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
            elif status >= 400:
                self.metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
            self.metrics.flush_metrics()
        except Exception:
            self.logger.warning("could not emit metrics", exc_info=True)

    def recorder(self) -> Recorder:
        """The environment's telemetry recorder (created on first use)."""
        if self._recorder is None:
            from .stores.clickhouse import get_client

            url = settings().clickhouse_url
            self._recorder = Recorder(clickhouse_insert(lambda: get_client(url)))
        return self._recorder
