"""The OpenAPI 3.1 document, built from the same route table that builds the router."""

from __future__ import annotations

from typing import Any

from dialguard import __version__
from dialguard.web.api import Route
from dialguard.web.routes import ROUTES
from dialguard.web.validate import body_schema

ERROR = {
    "type": "object",
    "required": ["error_id", "message", "details"],
    "properties": {"error_id": {"type": "string"}, "message": {"type": "string"}, "details": {}},
}
_ERROR_RESPONSE = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "security": [{"bearer": []}],
        "x-roles": sorted(str(r) for r in route.roles),
        "responses": {
            "200": {"description": "OK"},
            **{code: {"description": why, **_ERROR_RESPONSE} for code, why in _ERRORS.items()},
        },
    }
    if not route.call_path:
        op["responses"]["503"] = {"description": _ADMIN_BUSY, **_ERROR_RESPONSE}
    if route.query:
        op["parameters"] = [
            {"name": f.name, "in": "query", "required": f.required, "schema": f.schema()} for f in route.query
        ]
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema(route.body)}},
        }
    elif route.method == "POST" and route.content != "application/json":
        op["requestBody"] = {"required": True, "content": {route.content: {"schema": {"type": "string"}}}}
    return op


_ERRORS = {
    "400": "bad request: malformed JSON, wrong types, unknown fields, a truncated body",
    "401": "no token, or an unknown or revoked one",
    "403": "the token's role may not do this",
    "413": "the body is larger than http.max_body_bytes",
    "415": "the body is not of the content type this route reads",
    "422": "a number that is not a phone number, a file in the wrong format",
}

_ADMIN_BUSY = "admin_busy: imports or scrubs hold every admin connection past database.admin_acquire_timeout"


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dialguard",
            "version": __version__,
            "description": "Outbound-call compliance gate. Decisions follow the decision JSON of the README.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
    }
