"""The /v1 HTTP API: one table of routes, each with the roles it admits and the body it takes.

The table drives three things at once, so they cannot drift apart: the aiohttp router, the role check
on every request, and the OpenAPI document at /v1/openapi.json. Handlers only translate between HTTP
and the gate or the stores; no rule is decided here.

Two pools: the call path's (POST /v1/checks, as FastAGI checks) and the admin pool, for every other
route (imports, scrubs, lists, consent, audit). An import holds its connection for minutes; it must
never hold one a call needs. An admin request that gets no admin connection within the deadline
answers 503 rather than wait. The bearer token is looked up on the route's pool only when the token
cache (web/token_cache.py) does not hold it: most requests take no connection for it.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import aiohttp
from aiohttp import web

from dialguard.dnc_files import FileFormat, WrongFormat
from dialguard.gate import CheckRequest, Gate
from dialguard.numbers import InvalidLeadState, InvalidNumber, NumberFacts, parse_lead_state, parse_wildcard
from dialguard.policy.model import INTERNAL, Purpose, is_company_list
from dialguard.rules.loader import CONSENT_KINDS
from dialguard.scrub import Layout, Scrubbed, Scrubber, ScrubError
from dialguard.store import campaigns, complaints, consent, dnc, registry
from dialguard.store.audit import list_audit
from dialguard.store.campaigns import CampaignExists
from dialguard.store.db import Connection, Pool
from dialguard.store.tokens import Role, identify_hash, token_hash
from dialguard.web.errors import ApiError
from dialguard.web.token_cache import TokenCache, Who
from dialguard.web.validate import Field, parse_instant, read_body

POOL_KEY = web.AppKey("pool", Pool)  # the call path's
GATE_KEY = web.AppKey("gate", Gate)
ADMIN_POOL_KEY = web.AppKey("admin_pool", Pool)
ADMIN_GATE_KEY = web.AppKey("admin_gate", Gate)  # the gate on the admin pool: scrubs judge through it
ADMIN_WAIT_KEY = web.AppKey("admin_acquire_timeout", float)
REGION_KEY = web.AppKey("default_region", str)
TOKENS_KEY = web.AppKey("token_cache", TokenCache)  # tokens looked up lately: most take no connection
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)  # also bounds a streamed scrub, which aiohttp does not
MAX_LEAD_LINE = 64 * 1024  # one lead (a CSV row or an NDJSON object) longer than this is not a lead
WRITE_WITHIN = 30.0  # seconds a client may leave a streamed answer unread before it is cut off
# Set on each request by the role check: the token's name (the audit log's actor) and its role.
CALLER_KEY = web.RequestKey("caller", str)
ROLE_KEY = web.RequestKey("role", Role)

ALL = frozenset(Role)
WRITERS = frozenset({Role.ADMIN, Role.DIALER})
ADMIN = frozenset({Role.ADMIN})
PURPOSES = tuple(str(p) for p in Purpose)

ApiHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: ApiHandler
    roles: frozenset[Role]
    summary: str
    body: tuple[Field, ...] | None = None
    query: tuple[Field, ...] = ()
    content: str = "application/json"  # what the body is, when not a JSON object (uploads)
    call_path: bool = False  # served from the call path's pool; every other route uses the admin pool


def caller(request: web.Request) -> str:
    return request[CALLER_KEY]


def now(request: web.Request) -> datetime:
    """The gateway's injected clock: what a write records as its time."""
    return request.app[GATE_KEY].clock()


@asynccontextmanager
async def admin_connection(request: web.Request) -> AsyncIterator[Connection]:
    """A connection of the admin pool, or 503 when none frees up in time: never one of the call path's."""
    pool, wait = request.app[ADMIN_POOL_KEY], request.app[ADMIN_WAIT_KEY]
    try:
        conn = await pool.acquire(timeout=wait)
    except TimeoutError:
        raise ApiError(
            503,
            "admin_busy",
            f"no database connection for admin work within {wait:g} s (imports or scrubs hold them all); "
            "try again later, or raise database.admin_pool_size",
            {"admin_pool_size": pool.get_max_size(), "waited_seconds": wait},
        ) from None
    try:
        yield conn
    finally:
        await pool.release(conn)


def _number(request: web.Request, raw: str) -> str:
    parsed = request.app[GATE_KEY].parse(raw)  # as the checks read it: region and outside-line prefix
    if isinstance(parsed, InvalidNumber):
        raise ApiError(422, "invalid_number", f"{raw!r} is not a valid phone number: {parsed.reason}")
    return parsed.e164


def _entry(request: web.Request, raw: str) -> str:
    """A number, or a wildcard ``+1212*``."""
    if raw.endswith("*"):
        wildcard = parse_wildcard(raw)
        if isinstance(wildcard, InvalidNumber):
            raise ApiError(422, "invalid_number", f"{raw!r} is {wildcard.reason}")
        return wildcard
    return _number(request, raw)


def _query_int(request: web.Request, name: str, default: int, *, most: int = 10_000) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    # "²".isdigit() is True, and int() refuses past 4,300 digits: only short ASCII digits are a count.
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not 0 < int(text) <= most:
        raise ApiError(400, "bad_query", f"{name} must be a whole number from 1 to {most}")
    return int(text)


def _rows(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(r).items()} for r in records
    ]


# ---------------------------------------------------------------- checks

CHECK_BODY = (
    Field("number", required=True, doc="the number to call, in any usual form"),
    Field("campaign"),
    Field("at", instant=True, doc="judge at this instant (a dry run)"),
    Field("record", bool, doc="true: the call will be placed, so it counts as an attempt"),
    Field(
        "lead_state",
        doc="the lead's own state or province: FL, US-FL or Florida (both it and the number's must allow); "
        "one unknown for the number's country is refused (422 invalid_lead_state)",
    ),
)


def _lead_state(request: web.Request, number: str, state: str | None) -> str | None:
    """The lead state read as the gate reads it, by the number's country; 422 if it cannot be. An
    unparsable number leaves it to the gate, whose verdict on the number does not depend on it."""
    if state is None:
        return None  # no number to parse here: the gate parses it once
    parsed = request.app[GATE_KEY].parse(number)
    if not isinstance(parsed, NumberFacts):
        return state
    lead = parse_lead_state(state, parsed)
    if isinstance(lead, InvalidLeadState):
        details = {"field": "lead_state", "value": state, "country": lead.country}
        raise ApiError(422, "invalid_lead_state", lead.reason, details)
    return lead


async def post_check(request: web.Request) -> web.Response:
    body = await read_body(request, CHECK_BODY)
    if body.get("record") and "at" in body:
        raise ApiError(400, "bad_field", "a recorded check is judged now: drop 'at' or 'record'")
    result = await request.app[GATE_KEY].check(
        CheckRequest(
            number=body["number"],
            campaign=body.get("campaign"),
            record=body.get("record", False),
            lead_subdivision=_lead_state(request, body["number"], body.get("lead_state")),
            at=body.get("at"),
            channel=f"http:{caller(request)}",
        )
    )
    return web.json_response(result.to_json())


# ---------------------------------------------------------------- campaigns

CAMPAIGN_BODY = (
    Field("name", required=True),
    Field("purpose", required=True, choices=PURPOSES),
    Field("settings", dict, doc='per-campaign extras, e.g. {"optout_digit": "9"}'),
)


async def get_campaigns(request: web.Request) -> web.Response:
    async with admin_connection(request) as conn:
        found = await campaigns.list_campaigns(conn)
    return web.json_response(
        {
            "campaigns": [
                {"name": c.name, "purpose": str(c.purpose), "settings": dict(c.settings)} for c in found
            ]
        }
    )


async def post_campaign(request: web.Request) -> web.Response:
    body = await read_body(request, CAMPAIGN_BODY)
    try:
        async with admin_connection(request) as conn:
            made = await campaigns.add_campaign(
                conn,
                name=body["name"],
                purpose=Purpose(body["purpose"]),
                settings=body.get("settings"),
                actor=caller(request),
            )
    except CampaignExists as exc:
        raise ApiError(409, "campaign_exists", str(exc)) from None
    except campaigns.InvalidCampaignSettings as exc:
        raise ApiError(422, "bad_settings", str(exc), {"field": "settings"}) from None
    except campaigns.InvalidCampaignName:
        raise ApiError(
            400, "bad_field", "name: letters, digits, _ . - (at most 64)", {"field": "name"}
        ) from None
    return web.json_response({"name": made.name, "purpose": str(made.purpose)}, status=201)


# ---------------------------------------------------------------- consent

CONSENT_BODY = (
    Field("number", required=True),
    Field("purpose", choices=PURPOSES, doc="scope by purpose ..."),
    Field("campaign", doc="... or by campaign: exactly one of the two"),
    Field("kind", required=True, choices=tuple(sorted(CONSENT_KINDS))),
    Field("source", required=True, doc="web_form, call, paper, import, api ..."),
    Field("granted_at", instant=True, doc="when it was given (default now)"),
    Field("expires_at", instant=True),
    Field("evidence", dict, doc="what record keeping asks: name, the request as shown, a reference"),
)
REVOKE_BODY = (
    Field("number", required=True),
    Field("source", required=True, doc="how the person withdrew it: call, email, dtmf, letter ..."),
    Field("consent_id", int, doc="one grant only (default: every grant of the number)"),
    Field("evidence", dict),
)


async def get_consents(request: web.Request) -> web.Response:
    number = _number(request, request.query["number"]) if "number" in request.query else None
    async with admin_connection(request) as conn:
        rows = await consent.list_consents(conn, number, _query_int(request, "limit", 1000))
    return web.json_response({"consents": _rows(rows)})


async def post_consent(request: web.Request) -> web.Response:
    body = await read_body(request, CONSENT_BODY)
    if ("purpose" in body) == ("campaign" in body):
        raise ApiError(400, "bad_scope", "give exactly one of purpose and campaign")
    number = _number(request, body["number"])
    async with admin_connection(request) as conn:
        if "campaign" in body and await campaigns.get_campaign(conn, body["campaign"]) is None:
            raise ApiError(404, "unknown_campaign", f"no campaign {body['campaign']!r}")
        consent_id = await consent.grant_consent(
            conn,
            number=number,
            kind=body["kind"],
            source=body["source"],
            at=now(request),
            purpose=Purpose(body["purpose"]) if "purpose" in body else None,
            campaign=body.get("campaign"),
            granted_at=body.get("granted_at"),
            expires_at=body.get("expires_at"),
            evidence=body.get("evidence"),
            actor=caller(request),
        )
    return web.json_response({"consent_id": consent_id, "number": number}, status=201)


async def post_revocation(request: web.Request) -> web.Response:
    body = await read_body(request, REVOKE_BODY)
    number = _number(request, body["number"])
    try:
        async with admin_connection(request) as conn:
            revocation_id = await consent.revoke_consent(
                conn,
                number=number,
                source=body["source"],
                at=now(request),
                consent_id=body.get("consent_id"),
                evidence=body.get("evidence"),
                actor=caller(request),
            )
    except consent.UnknownConsent as exc:
        raise ApiError(404, "unknown_consent", str(exc), {"field": "consent_id"}) from None
    return web.json_response({"revocation_id": revocation_id, "number": number}, status=201)


# ---------------------------------------------------------------- do-not-call

DNC_BODY = (
    Field("number", required=True, doc="a number, or a wildcard such as +1212*"),
    Field("list", doc="default internal; a dialer may write only internal and campaign:NAME"),
    Field("source", doc="where the request came from (default api)"),
    Field("expires_at", instant=True),
    Field("evidence", dict),
)
DNC_REMOVE_BODY = (Field("number", required=True), Field("list"))
LIST_QUERY = (Field("list", doc="only this list"), Field("limit", int))


def _dnc_list(request: web.Request, body: dict[str, Any]) -> str:
    name = str(body.get("list") or INTERNAL)
    if not is_company_list(name):
        raise ApiError(
            422, "national_list",
            f"{name!r} is a national list: it changes only by import (POST /v1/dnc/imports); "
            f"write single numbers to {INTERNAL!r} or campaign:NAME",
        )  # fmt: skip
    return name


async def get_dnc(request: web.Request) -> web.Response:
    async with admin_connection(request) as conn:
        rows = await dnc.list_dnc(conn, request.query.get("list"), _query_int(request, "limit", 1000))
    return web.json_response({"entries": _rows(rows)})


async def post_dnc(request: web.Request) -> web.Response:
    body = await read_body(request, DNC_BODY)
    number = _entry(request, body["number"])
    name = _dnc_list(request, body)
    async with admin_connection(request) as conn:
        added = await dnc.add_dnc(
            conn,
            number=number,
            at=now(request),
            list_name=name,
            source=body.get("source", "api"),
            evidence=body.get("evidence"),
            actor=caller(request),
            expires_at=body.get("expires_at"),
        )
    return web.json_response({"number": number, "list": name, "added": added}, status=201 if added else 200)


async def delete_dnc(request: web.Request) -> web.Response:
    body = await read_body(request, DNC_REMOVE_BODY)
    number = _entry(request, body["number"])
    name = str(body.get("list") or INTERNAL)
    async with admin_connection(request) as conn:
        removed = await dnc.remove_dnc(
            conn, number=number, at=now(request), list_name=name, source="api", actor=caller(request)
        )
    if not removed:
        raise ApiError(404, "not_listed", f"{number} is not on {name}")
    return web.json_response({"number": number, "list": name, "removed": True})


async def get_dnc_lists(request: web.Request) -> web.Response:
    async with admin_connection(request) as conn:
        rows = await registry.registry_status(conn)
    return web.json_response({"lists": _rows(rows)})


IMPORT_QUERY = (
    Field("list", required=True, doc="us_national, uk_tps, internal, campaign:NAME ..."),
    Field("format", required=True, choices=tuple(str(f) for f in FileFormat)),
    Field("date", doc="the publisher's date of the data, YYYY-MM-DD: required for a national list"),
)


async def post_dnc_import(request: web.Request) -> web.Response:
    """The file is the request body, streamed into the import: a truncated upload imports nothing."""
    query = {f.name: request.query.get(f.name) for f in IMPORT_QUERY}
    if not query["list"] or query["format"] not in IMPORT_QUERY[1].choices:
        raise ApiError(400, "bad_query", "give ?list=NAME&format=" + "|".join(IMPORT_QUERY[1].choices))
    try:
        list_date = date.fromisoformat(query["date"]) if query["date"] else None
    except ValueError:
        raise ApiError(400, "bad_query", "date must be YYYY-MM-DD") from None

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in request.content.iter_chunked(1 << 20):
                yield chunk
        except (ConnectionError, asyncio.IncompleteReadError, aiohttp.ClientPayloadError) as exc:
            raise ApiError(400, "truncated_body", f"the upload broke off: {type(exc).__name__}") from None
        if request.content_length is not None and request.content.total_bytes < request.content_length:
            raise ApiError(400, "truncated_body", "the upload ended before its Content-Length")

    fmt, name = FileFormat(str(query["format"])), str(query["list"])
    region = request.app[REGION_KEY]
    lapse_after = request.app[GATE_KEY].rulebook.entry_lifetime(name)
    try:
        async with admin_connection(request) as conn:
            report = await registry.import_list(
                conn, chunks(), list_name=name, fmt=fmt, list_date=list_date, now=now(request),
                actor=caller(request),
                default_region=region, lapse_after=lapse_after,
            )  # fmt: skip
    except WrongFormat as exc:
        raise ApiError(422, "wrong_format", str(exc)) from None
    except registry.ImportRefused as exc:
        raise ApiError(422, "import_refused", str(exc)) from None
    except registry.InvalidListName:
        raise ApiError(400, "bad_query", "list: lower-case letters, digits and _") from None
    return web.json_response(report.as_json(), status=201)


# ---------------------------------------------------------------- complaints

COMPLAINT_BODY = (
    Field("number", required=True),
    Field("channel", required=True, doc="phone, email, letter, regulator, api ..."),
    Field("campaign"),
    Field("note"),
)


async def post_complaint(request: web.Request) -> web.Response:
    body = await read_body(request, COMPLAINT_BODY)
    number = _number(request, body["number"])
    async with admin_connection(request) as conn:
        complaint_id = await complaints.file_complaint(
            conn,
            number=number,
            channel=body["channel"],
            at=now(request),
            note=body.get("note", ""),
            campaign=body.get("campaign"),
            actor=caller(request),
        )
    return web.json_response({"complaint_id": complaint_id, "number": number}, status=201)


async def get_complaints(request: web.Request) -> web.Response:
    async with admin_connection(request) as conn:
        rows = await complaints.list_complaints(conn, limit=_query_int(request, "limit", 100))
    return web.json_response({"complaints": _rows(rows)})


# ---------------------------------------------------------------- scrub

SCRUB_QUERY = (Field("campaign", required=True), Field("at", instant=True))


def _csv_rows(text: str) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # e.g. binary data: "new-line character seen in unquoted field"
        raise ApiError(400, "bad_csv", f"the body is not CSV: {exc}") from None


async def post_scrub(request: web.Request) -> web.StreamResponse:
    """A lead list in — CSV with a header naming a number column, or NDJSON, one object a lead with
    "number" (and "lead_state") — streamed; NDJSON out: one line a row, then the summary."""
    campaign = request.query.get("campaign")
    if not campaign:
        raise ApiError(400, "bad_query", "give ?campaign=NAME")
    at = parse_instant(request.query["at"], "at") if "at" in request.query else None
    if request.content_type not in ("text/csv", "application/x-ndjson"):
        raise ApiError(
            415, "unsupported_media_type", "send the lead list as text/csv or application/x-ndjson"
        )

    limit = request.app[MAX_BODY_KEY]

    async def body() -> AsyncIterator[bytes]:
        """The body in chunks, within http.max_body_bytes, and no line without its end past MAX_LEAD_LINE."""
        total = since_newline = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            total += len(chunk)
            if total > limit:
                raise ApiError(
                    413, "body_too_large", f"the lead list is over http.max_body_bytes ({limit:,})"
                )
            newline = chunk.rfind(b"\n")
            since_newline = len(chunk) - newline - 1 if newline >= 0 else since_newline + len(chunk)
            if since_newline > MAX_LEAD_LINE:
                raise ApiError(400, "line_too_long", f"a line is over {MAX_LEAD_LINE:,} bytes: not a lead")
            yield chunk

    async def lines() -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")  # Excel's BOM is no part of a lead
        rest = ""
        async for chunk in body():
            *whole, rest = (rest + decoder.decode(chunk)).split("\n")
            for line in whole:
                yield line
        if (rest := rest + decoder.decode(b"", final=True)).strip():
            yield rest

    async def ndjson_rows() -> AsyncIterator[list[str]]:
        yield ["number", "lead_state"]
        n = 0
        async for line in lines():
            n += 1
            if not line.strip():
                continue
            try:
                lead = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ApiError(400, "bad_json", f"line {n} is not JSON: {exc}") from None
            if not isinstance(lead, dict) or not isinstance(lead.get("number", ""), str):
                raise ApiError(400, "bad_type", f'line {n}: each lead is an object with a string "number"')
            yield [lead.get("number", ""), str(lead.get("lead_state") or "")]

    async def csv_rows() -> AsyncIterator[list[str]]:
        # A character may span two chunks; Excel's BOM is no part of the header.
        decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
        rest = ""
        async for chunk in body():
            text = rest + decoder.decode(chunk)
            cut = text.rfind("\n") + 1
            if text.count('"', 0, cut) % 2:  # the cut is inside a quoted field: wait for its end
                if len(text) > 16 * MAX_LEAD_LINE:  # ... but not for ever, re-reading it on the loop
                    raise ApiError(400, "bad_csv", "a quoted field never ends: not a lead list")
                rest = text
                continue
            rest = text[cut:]
            for row in _csv_rows(text[:cut]):
                yield row
        rest += decoder.decode(b"", final=True)
        if rest.strip():
            for row in _csv_rows(rest):
                yield row

    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})

    async def started(_: Layout) -> None:
        await response.prepare(request)

    async def each(scrubbed: Scrubbed) -> None:
        # The verdict comes from the scrub, never from the lead's cells: a ragged row or an earlier
        # scrub's columns cannot pass for it.
        nxt = scrubbed.next_callable_at
        line = {
            "row": scrubbed.lead(),
            "verdict": scrubbed.verdict,
            "reason": scrubbed.reason,
            "reasons": list(scrubbed.codes),
            "next_callable_at": nxt.isoformat() if nxt else None,
            "row_error": scrubbed.row_error,
        }
        await write(json.dumps(line).encode() + b"\n")

    async def write(data: bytes) -> None:
        # A client that sends its whole body before reading would otherwise hold the handler for ever.
        async with asyncio.timeout(WRITE_WITHIN):
            await response.write(data)

    try:
        rows = csv_rows() if request.content_type == "text/csv" else ndjson_rows()
        scrubber = Scrubber(gate=request.app[ADMIN_GATE_KEY], campaign=campaign, at=at)
        summary = await scrubber.scrub(rows, started=started, each=each)
    except ScrubError as exc:
        raise ApiError(422, "bad_lead_list", str(exc)) from None
    except ApiError as exc:
        if not response.prepared:
            raise
        # The stream has begun with status 200: the error is its last line, where the summary would be.
        error = {"error_id": exc.error_id, "message": exc.message, "details": exc.details or {}}
        await write(json.dumps({"error": error}).encode() + b"\n")
        await response.write_eof()
        return response
    await write(json.dumps({"summary": summary.as_json()}).encode() + b"\n")
    await response.write_eof()
    return response


# ---------------------------------------------------------------- audit


async def get_audit(request: web.Request) -> web.Response:
    async with admin_connection(request) as conn:
        rows = await list_audit(
            conn,
            subject=request.query.get("subject"),
            after_id=_query_int(request, "after", 0, most=2**62) if "after" in request.query else 0,
            limit=_query_int(request, "limit", 100),
        )
    return web.json_response({"entries": _rows(rows)})


from dialguard.web.evidence import ROUTES as EVIDENCE_ROUTES  # noqa: E402 - it builds on the names above

ROUTES = (
    Route(
        "POST",
        "/v1/checks",
        post_check,
        WRITERS,
        "Judge one call; the decision JSON",
        body=CHECK_BODY,
        call_path=True,
    ),
    Route("GET", "/v1/campaigns", get_campaigns, ALL, "List campaigns"),
    Route(
        "POST", "/v1/campaigns", post_campaign, ADMIN, "Define a campaign and its purpose", body=CAMPAIGN_BODY
    ),
    Route(
        "GET", "/v1/consents", get_consents, ALL, "Consent grants with their state", query=(Field("number"),)
    ),
    Route("POST", "/v1/consents", post_consent, WRITERS, "Record a consent grant", body=CONSENT_BODY),
    Route("POST", "/v1/consents/revocations", post_revocation, WRITERS, "Withdraw consent", body=REVOKE_BODY),
    Route("GET", "/v1/dnc", get_dnc, ALL, "Do-not-call entries and wildcards", query=LIST_QUERY),
    Route("POST", "/v1/dnc", post_dnc, WRITERS, "Put a number or wildcard on a list", body=DNC_BODY),
    Route("DELETE", "/v1/dnc", delete_dnc, ADMIN, "Take a number off a list", body=DNC_REMOVE_BODY),
    Route("GET", "/v1/dnc/lists", get_dnc_lists, ALL, "National lists: live version, date, size"),
    Route(
        "POST",
        "/v1/dnc/imports",
        post_dnc_import,
        ADMIN,
        "Import a list file (the body, streamed)",
        query=IMPORT_QUERY,
        content="text/plain",
    ),
    Route("GET", "/v1/complaints", get_complaints, ALL, "Complaints received"),
    Route("POST", "/v1/complaints", post_complaint, WRITERS, "File a complaint", body=COMPLAINT_BODY),
    Route(
        "POST",
        "/v1/scrub",
        post_scrub,
        WRITERS,
        "Scrub a CSV lead list; NDJSON out",
        query=SCRUB_QUERY,
        content="text/csv",
    ),
    Route("GET", "/v1/audit", get_audit, frozenset({Role.ADMIN, Role.SUPERVISOR}), "The audit log"),
    *EVIDENCE_ROUTES,
)


def guarded(route: Route) -> ApiHandler:
    """The route's handler behind the bearer-token and role check."""

    async def handler(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, "unauthenticated", "send Authorization: Bearer TOKEN (dialguard token create)"
            )
        digest = token_hash(token.strip())

        async def look_up() -> Who | None:
            if route.call_path:
                async with request.app[POOL_KEY].acquire() as conn:
                    return await identify_hash(conn, digest)
            async with admin_connection(request) as conn:
                return await identify_hash(conn, digest)

        who = await request.app[TOKENS_KEY].identify(digest, look_up)
        if who is None:
            raise ApiError(401, "unauthenticated", "unknown or revoked token")
        name, role = who
        if role not in route.roles:
            allowed = sorted(str(r) for r in route.roles)
            raise ApiError(403, "forbidden", f"{route.method} {route.path} needs role {' or '.join(allowed)}")
        request[CALLER_KEY] = name
        request[ROLE_KEY] = role
        return await route.handler(request)

    return handler


def add_api_routes(app: web.Application, routes: tuple[Route, ...]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, guarded(route))
