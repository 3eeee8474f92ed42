"""HLR providers: ask whether a mobile number is roaming, and where. Each failure is an ``HlrError`` cause.

- ``http``: any vendor's JSON API, by configuration: a URL template, method, auth header and a map from
  our fields to dotted paths in the vendor's answer (``data.roaming``, ``network.visited.mcc``).
- ``file``: a CSV of ``number,status[,visited_country]`` for demos and tests. The status speaks the HTTP
  provider's words, any case: ``abroad``, ``roaming``, ``true``, ``yes``, ``1`` (with ``visited_country``)
  or ``home``, ``false``, ``no``, ``0``; any other word is no answer, cause
  ``unrecognised status 'xyz' in FILE line N``, never "at home".
- ``none`` (no provider object at all): a look-up the rules ask for is ``roaming.unknown``, cause
  ``no_provider``, and the packs' failure policy decides.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import aiohttp

TRUE_WORDS = {"true", "yes", "1", "roaming", "abroad"}
HOME_WORDS = {"false", "no", "0", "home"}  # their opposites: what an answers file may say of a number at home


class HlrError(Exception):
    """A look-up gave no usable answer; ``cause`` is a short stable code for evidence and logs."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class HlrAnswer:
    roaming: bool
    visited_country: str | None  # ISO 3166 alpha-2
    home_network: str | None = None
    ported: bool | None = None


class HlrProvider(Protocol):
    name: str

    async def lookup(self, e164: str) -> HlrAnswer: ...


@cache
def mcc_table() -> Mapping[str, str]:
    data = json.loads(resources.files("dialguard").joinpath("data/mcc.json").read_text())
    return dict(data["mcc"])


def country_of(value: object) -> str:
    """An ISO code, or an MCC (``260`` -> ``PL``); anything else is an ``unknown_country`` failure."""
    text = str(value).strip().upper()
    if len(text) == 2 and text.isalpha():
        return text
    if len(text) == 3 and text.isdigit() and text in mcc_table():
        return mcc_table()[text]
    raise HlrError("unknown_country", text[:16])


def _path(body: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(body, dict) or part not in body:
            raise HlrError(f"missing_field:{dotted}")
        body = body[part]
    return body


def _truthy(value: object) -> bool:
    return value is True or str(value).strip().lower() in TRUE_WORDS


class HttpProvider:
    """A vendor's HTTP JSON API; ``mapping`` needs ``roaming`` and ``visited_country``."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        mapping: Mapping[str, str],
        method: str = "GET",
        auth_header: str = "",
        auth_value: str = "",
        name: str = "http",
    ) -> None:
        for needed in ("roaming", "visited_country"):
            if needed not in mapping:
                raise ValueError(f"hlr.mapping needs {needed!r}")
        self.session = session
        self.url = url
        self.mapping = dict(mapping)
        self.method = method.upper()
        self.headers = {auth_header: auth_value} if auth_header else {}
        self.name = name

    def __repr__(self) -> str:  # the auth value never shows
        return f"HttpProvider(url={self.url!r}, method={self.method!r})"

    async def lookup(self, e164: str) -> HlrAnswer:
        url = self.url.format(e164=e164, digits=e164.lstrip("+"))
        body = {"number": e164} if self.method == "POST" else None
        try:
            async with self.session.request(self.method, url, headers=self.headers, json=body) as response:
                if response.status in (401, 403):
                    raise HlrError("unauthorized", f"HTTP {response.status}: check hlr.auth_value")
                if response.status != 200:
                    raise HlrError(f"http_{response.status}")
                raw = await response.read()
        except aiohttp.ClientError as exc:
            raise HlrError("connect", type(exc).__name__) from None
        try:
            answer = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HlrError("bad_json") from None
        roaming = _truthy(_path(answer, self.mapping["roaming"]))
        visited = _path(answer, self.mapping["visited_country"]) if roaming else None
        home = self.mapping.get("home_network")
        ported = self.mapping.get("ported")
        return HlrAnswer(
            roaming=roaming,
            visited_country=country_of(visited) if roaming else None,
            home_network=str(_path(answer, home)) if home else None,
            ported=_truthy(_path(answer, ported)) if ported else None,
        )


class FileProvider:
    """Answers from a CSV file: number (E.164), status, visited_country.

    A status in ``TRUE_WORDS`` (``abroad``, ``roaming``, ...) is abroad, one in ``HOME_WORDS`` (``home``,
    ``false``, ...) at home, case and spaces aside. Any other word is no answer: the look-up fails with the
    cause ``unrecognised status 'xyz' in FILE line N``, so the rule packs decide as for a vendor failure.
    A visited_country that is neither an ISO code nor a known MCC refuses the file (``unknown_country``).
    """

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, HlrAnswer | str] = {}  # a string: the cause of a line that is no answer
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                number = (row.get("number") or "").strip()
                status = (row.get("status") or "").strip().lower()
                visited = (row.get("visited_country") or "").strip()
                country = country_of(visited) if visited else None
                if status in TRUE_WORDS:
                    self.answers[number] = HlrAnswer(roaming=True, visited_country=country)
                elif status in HOME_WORDS:
                    self.answers[number] = HlrAnswer(roaming=False, visited_country=None)
                else:
                    word = (row.get("status") or "").strip()[:32]
                    self.answers[number] = f"unrecognised status {word!r} in {path} line {reader.line_num}"

    async def lookup(self, e164: str) -> HlrAnswer:
        if e164 not in self.answers:
            raise HlrError("not_found", "the number is not in the HLR file")
        answer = self.answers[e164]
        if isinstance(answer, str):
            raise HlrError(answer)
        return answer
