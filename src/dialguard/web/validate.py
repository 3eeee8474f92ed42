"""Request bodies checked against a small declared shape; the same shape feeds the OpenAPI document."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from dialguard import clock
from dialguard.web.errors import ApiError

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", bool: "boolean", dict: "object"}
MAX_INT = 2**63 - 1  # PostgreSQL's bigint: ids and counts beyond it cannot be stored or compared
MAX_DEPTH = 32  # how deep an evidence object may nest


def _unstorable(value: Any, depth: int = 0) -> str | None:
    """What in a JSON value PostgreSQL cannot store: a NUL character (text and jsonb refuse it), an
    integer beyond bigint, or nesting deeper than any evidence needs."""
    if depth > MAX_DEPTH:
        return f"the body nests deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return "text cannot hold a NUL character (\\u0000)" if "\x00" in value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return f"integers are at most {MAX_INT} in magnitude" if abs(value) > MAX_INT else None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((p for item in items if (p := _unstorable(item, depth + 1)) is not None), None)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: type = str
    required: bool = False
    choices: tuple[str, ...] = ()
    instant: bool = False  # an ISO-8601 time with an offset
    doc: str = ""

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": _JSON_TYPES[self.kind]}
        if self.choices:
            out["enum"] = list(self.choices)
        if self.instant:
            out["format"] = "date-time"
        if self.doc:
            out["description"] = self.doc
        return out


def body_schema(fields: tuple[Field, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [f.name for f in fields if f.required],
        "properties": {f.name: f.schema() for f in fields},
    }


def parse_instant(value: str, name: str) -> datetime:
    try:
        return clock.parse_instant(value)
    except ValueError as exc:
        raise ApiError(400, "bad_field", f"{name}: {exc}", {"field": name}) from None


async def read_body(request: web.Request, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The JSON object the request carries, every field of the declared type, no unknown field."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception as exc:  # a client that hung up or sent less than it announced
        raise ApiError(400, "truncated_body", f"the body could not be read: {type(exc).__name__}") from None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "bad_json", "the body nests too deep to be a request") from None
    if (problem := _unstorable(body)) is not None:
        raise ApiError(400, "bad_field", problem)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    known = {f.name: f for f in fields}
    if unknown := sorted(set(body) - set(known)):
        raise ApiError(
            400, "unknown_fields", f"unknown fields: {', '.join(unknown)}", {"allowed": sorted(known)}
        )
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in body or body[f.name] is None:
            if f.required:
                raise ApiError(400, "missing_field", f"{f.name} is required", {"field": f.name})
            continue
        value = body[f.name]
        if f.kind is int and isinstance(value, int) and not 0 <= value <= MAX_INT:
            raise ApiError(400, "bad_field", f"{f.name} must be from 0 to {MAX_INT}", {"field": f.name})
        if not isinstance(value, f.kind) or (f.kind is int and isinstance(value, bool)):
            raise ApiError(
                400, "bad_type", f"{f.name} must be a JSON {_JSON_TYPES[f.kind]}", {"field": f.name}
            )
        if f.choices and value not in f.choices:
            raise ApiError(
                400, "bad_field", f"{f.name} must be one of {', '.join(f.choices)}", {"field": f.name}
            )
        out[f.name] = parse_instant(str(value), f.name) if f.instant else value
    return out
