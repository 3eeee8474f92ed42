"""The access log keeps the path and drops the query string, where phone numbers travel."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from dialguard.web.access_log import PathOnlyAccessLogger


def test_a_number_in_the_query_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("aiohttp.access")
    request = make_mocked_request("GET", "/v1/consents?number=%2B48601234567")
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        PathOnlyAccessLogger(logger, "").log(request, web.Response(status=200), 0.0012)
    assert "/v1/consents" in caplog.text and "200" in caplog.text
    assert "48601234567" not in caplog.text and "number=" not in caplog.text
