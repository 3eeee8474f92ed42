"""The supervisors' console: ``/`` and its files under ``/static/``, served from the package itself.

Hand-written HTML, CSS and ES modules with no build step and nothing fetched from elsewhere: the page
works on a gateway with no internet access. The files are read once, when the app is made; only the
names found then are served (no path from a request ever reaches the file system). Every answer is
``no-store`` as the API's are (app.py sets it), and carries a Content-Security-Policy that admits
scripts and styles of this origin only: no inline script, no framing.
"""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

from dialguard.web.errors import ApiError

TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def read_static() -> dict[str, tuple[bytes, str]]:
    """Every servable file of ``web/static``, by name: its bytes and its content type."""
    found = {}
    for entry in files("dialguard.web").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in TYPES:
            found[entry.name] = (entry.read_bytes(), TYPES[suffix])
    return found


def add_page_routes(app: web.Application) -> None:
    static = read_static()

    def answer(name: str) -> web.Response:
        body, content_type = static[name]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)

    async def index(request: web.Request) -> web.Response:
        return answer("index.html")

    async def static_file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in static:
            raise ApiError(404, "not_found", f"no file {name!r} in the console", {"path": request.path})
        return answer(name)

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static_file)
