"""The HTTP access log without query strings: ``?number=+48...`` would put phone numbers in plain logs."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class PathOnlyAccessLogger(AbstractAccessLogger):
    """One line a request: peer, method, path (never the query), status, milliseconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.1fms', request.remote, request.method, request.path, response.status, time * 1000
        )
