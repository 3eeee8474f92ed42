"""Errors at the HTTP edge: every failure leaves as JSON ``{error_id, message, details}`` with its status."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dialguard.store.db import DATABASE_AWAY, describe_failure

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request the API refuses, with the status, a stable error id and what to do about it."""

    def __init__(self, status: int, error_id: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.details = details


def error_response(status: int, error_id: str, message: str, details: Any = None) -> web.Response:
    body = {"error_id": error_id, "message": message, "details": details if details is not None else {}}
    return web.json_response(body, status=status)


# aiohttp's own refusals (body too large, unknown path, wrong method) get the same JSON shape.
_HTTP_IDS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if any("\x00" in value for value in request.query.values()):
        # PostgreSQL's text cannot hold a NUL: refused here for every route, before any handler looks.
        return error_response(400, "bad_query", "a query value holds a NUL character (%00)")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error_id, exc.message, exc.details)
    except DATABASE_AWAY as exc:
        log.warning(
            "%s %s: the database is away (%s); answered 503",
            request.method,
            request.path,
            describe_failure(exc),
        )
        return error_response(
            503,
            "database_unavailable",
            "the database does not answer; try again shortly",
            {"retry_after_seconds": 2},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_id = _HTTP_IDS.get(exc.status, "http_error")
        return error_response(exc.status, error_id, exc.reason, {"path": request.path})
    except Exception:
        # A bug, not the client's fault: say so without leaking internals, keep the trace in the log.
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error in %s %s (incident %s)", request.method, request.path, incident)
        return error_response(
            500, "internal", "internal error; the log has the details", {"incident": incident}
        )
