"""``python -m dialguard.healthcheck``: exit 0 when this host's gateway answers ``GET /healthz`` with 200.

The container image's HEALTHCHECK (slim images have no curl); usable from any monitor. It reads the
configuration ``dialguard serve`` reads (``$DIALGUARD_CONFIG``, ``DIALGUARD_HTTP_HOST``/``_PORT``) and
asks the address serve listens on; a wildcard address (``0.0.0.0``, ``::``) is asked on loopback.
Exit 1 on anything else (as Docker wants: 0 healthy, 1 unhealthy), with one line saying why.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from dialguard.config import ConfigError, load_settings

TIMEOUT = 4.0  # seconds; /healthz itself waits at most 2 s for a database connection
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def healthz_url(host: str, port: int) -> str:
    """The URL of /healthz on the address ``http.host`` binds (loopback for a wildcard)."""
    host = _LOOPBACK.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"dialguard healthcheck: configuration error: {exc}", file=sys.stderr)
        return 1
    url = healthz_url(settings.http.host, settings.http.port)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
    try:
        with opener.open(url, timeout=TIMEOUT) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:  # 503: serve runs, but the database does not answer it
        status = exc.code
        exc.close()
    except (OSError, ValueError) as exc:  # refused, timed out, no route; URLError is an OSError
        print(f"dialguard healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"dialguard healthcheck: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
