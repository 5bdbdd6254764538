"""HTTP ingest: ``POST /v1/events`` with one event, a JSON array, or NDJSON.

* ``Authorization: Bearer <token>`` is required (401 otherwise, nothing sent).
* Bodies over the limit get 413 before anything is sent.
* 202: every event was accepted and acknowledged by Kafka.
* 400: some inputs were rejected; they are in the dead-letter topic, the valid
  ones of the same request were still accepted; the body lists each
  rejection with its index and reason. An event id that came earlier in the
  request is one (``duplicate_event_id``).
* 503: Kafka did not acknowledge some records; retrying delivers them. The
  warehouse stores an event sent twice once (by its id); a stream worker
  counts it twice (docs/reliability.md, "Known limits").

Each answer also counts the accepted events that are more than the stream's
grace older than an event of their channel the server accepted before
(``late_for_stream``, :mod:`ingest.order`): a stream worker drops those as
late, the warehouse keeps them.

``GET /healthz`` needs no token; ``GET /openapi.json`` describes the API.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ingest.events import Event
from ingest.order import TimeOrder, describe_late
from ingest.producer import BatchResult, Producer, Record

__all__ = ["EVENTS_PATH", "IngestResponse", "create_app", "split_body"]

log = logging.getLogger(__name__)

EVENTS_PATH: Final = "/v1/events"
_NDJSON_TYPES: Final = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/jsonlines",
)


class IngestError(BaseModel):
    index: int
    code: str
    reason: str


class Undelivered(BaseModel):
    index: int
    event_id: str | None = Field(
        description="the event Kafka did not take; null for a rejected input whose dead "
        "letter it did not take"
    )


class IngestResponse(BaseModel):
    received: int
    accepted: int
    dead_lettered: int
    duplicates: int = Field(
        description="of dead_lettered: events whose event_id came earlier in the request"
    )
    failed: int
    late_for_stream: int = Field(
        description="accepted events more than the stream's grace older than an event of their "
        "channel this server accepted before: a stream worker drops them as late, the "
        "warehouse keeps them"
    )
    errors: list[IngestError] = []
    undelivered: list[Undelivered] = Field(
        [], description="with 503: the inputs Kafka did not take; sending them again is safe"
    )


class Problem(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    kafka: bool


class _TooLarge(Exception):
    pass


def split_body(body: bytes, content_type: str) -> list[Record]:
    """The inputs in a request body: one object, an array of objects, or NDJSON lines."""
    if content_type.split(";")[0].strip().lower() not in _NDJSON_TYPES:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            if b"\n" not in body.strip():
                return [Record(body, "http")]
        else:
            if isinstance(document, list):
                return [
                    Record(orjson.dumps(item), f"http[{index}]")
                    for index, item in enumerate(document)
                ]
            return [Record(body, "http")]
    lines = (line.rstrip(b"\r") for line in body.split(b"\n"))
    return [
        Record(line, f"http:{number}") for number, line in enumerate(lines, start=1) if line.strip()
    ]


def _response(result: BatchResult, late: int) -> JSONResponse:
    payload = IngestResponse(
        received=result.received,
        accepted=result.accepted,
        dead_lettered=result.dead_lettered,
        duplicates=result.duplicates,
        failed=result.failed,
        late_for_stream=late,
        errors=[
            IngestError(index=index, code=rejection.code.value, reason=rejection.reason)
            for index, _source, rejection in result.rejections
        ],
        undelivered=[
            Undelivered(index=index, event_id=event_id) for index, event_id in result.undelivered
        ],
    )
    status = 503 if result.failed else 400 if result.dead_lettered else 202
    return JSONResponse(payload.model_dump(), status_code=status)


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


_EVENT_SCHEMA: Final[dict[str, Any]] = {"$ref": "#/components/schemas/Event"}
_REQUEST_BODY: Final[dict[str, Any]] = {
    "required": True,
    "description": "One event, a JSON array of events, or newline-delimited JSON (one event per line).",
    "content": {
        "application/json": {
            "schema": {"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]}
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "one JSON event per line"}
        },
    },
}


def create_app(
    producer: Producer,
    *,
    token: str,
    max_body_bytes: int,
    kafka_ok: Callable[[], bool],
    grace_s: float,
    version: str = "1",
    max_reported_errors: int = 1000,
) -> FastAPI:
    """The ingest web app, sending through a started ``producer``.

    ``kafka_ok`` answers the health check: can Kafka be reached right now?
    ``grace_s`` is the stream's grace, for ``late_for_stream``.
    """
    expected = f"Bearer {token}".encode()
    order = TimeOrder(grace_s)
    app = FastAPI(
        title="commpulse ingest",
        version=version,
        description=__doc__,
        docs_url=None,
        redoc_url=None,
    )

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def health() -> JSONResponse:
        connected = kafka_ok()
        return JSONResponse(
            {"status": "ok" if connected else "degraded", "kafka": connected},
            status_code=200 if connected else 503,
        )

    @app.post(
        EVENTS_PATH,
        status_code=202,
        response_model=IngestResponse,
        responses={
            400: {
                "model": IngestResponse,
                "description": "some inputs were rejected (dead-lettered)",
            },
            401: {"model": Problem, "description": "missing or wrong bearer token"},
            413: {"model": Problem, "description": "body larger than the limit"},
            503: {"model": IngestResponse, "description": "Kafka did not acknowledge; retry"},
        },
        openapi_extra={"requestBody": _REQUEST_BODY},
        tags=["ingest"],
    )
    async def post_events(request: Request) -> JSONResponse:
        if not authorised(request):
            return _problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            body = await _read_limited(request, max_body_bytes)
        except _TooLarge:
            return _problem(413, f"request body larger than {max_body_bytes} bytes")
        if not body.strip():
            return _problem(400, "empty request body; send an event, an array of events, or NDJSON")
        records = split_body(body, request.headers.get("content-type", ""))
        late: list[str] = []  # where each event counted in late_for_stream came from

        def accepted(event: Event, record: Record) -> None:
            if order.see(event, record):
                late.append(record.source)

        send: Callable[..., BatchResult] = producer.send_many
        result = await run_in_threadpool(
            send, records, wait=True, keep_rejections=max_reported_errors, on_accepted=accepted
        )
        if late:
            log.warning("accepted: %s", describe_late(len(late), late[0], grace_s))
        return _response(result, len(late))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Event"] = Event.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components.update(components["Event"].pop("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
