"""A TCP proxy that can cut its links: the database "goes away" and "comes back" on command.

Upstream may be TCP (host, port) or a Unix socket path (the embedded PostgreSQL listens on one).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class CuttableProxy:
    def __init__(self, *, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.accepting = True
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._replies: set[asyncio.Event] = set()  # one per link: set while the server's bytes flow
        self._open = asyncio.Event()  # cleared while blackholed: no byte moves either way
        self._open.set()

    @classmethod
    def for_dsn(cls, dsn: str) -> CuttableProxy:
        parts = urlsplit(dsn)
        query = dict(parse_qsl(parts.query))
        host = query.get("host") or parts.hostname or "127.0.0.1"
        port = int(query.get("port") or parts.port or 5432)
        return cls(upstream_host=host, upstream_port=port)

    def dsn_through(self, dsn: str) -> str:
        """The same DSN, pointed at this proxy."""
        parts = urlsplit(dsn)
        query = {k: v for k, v in parse_qsl(parts.query) if k not in ("host", "port")}
        user = parts.username or "postgres"
        auth = f"{user}:{parts.password}@" if parts.password else f"{user}@"
        return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{self.port}", parts.path, urlencode(query), ""))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream_host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}")
        return await asyncio.open_connection(self.upstream_host, self.upstream_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        await self._open.wait()  # blackholed: the client's connect "succeeded", nothing else happens
        try:
            up_reader, up_writer = await self._connect_upstream()
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        flowing = asyncio.Event()
        flowing.set()
        self._replies.add(flowing)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer, flowing)),
        ]
        self._links.update(pumps)
        for p in pumps:
            p.add_done_callback(self._links.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event | None = None
    ) -> None:
        try:
            while data := await reader.read(65536):
                await self._open.wait()
                if flowing is not None:
                    await flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def cut(self) -> None:
        """Drop every live link and refuse new ones, as a dead server or network would."""
        self.accepting = False
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def hold_replies(self) -> None:
        """The server's answers on the links open now stop reaching the client (a reply lost on the way);
        links opened later flow."""
        for flowing in self._replies:
            flowing.clear()
        self._replies.clear()

    def blackhole(self) -> None:
        """Every byte is held, both ways, on the links open now and on new ones, and nothing is refused or
        closed: a network that drops packets, or a host frozen behind it. ``restore`` lets the held bytes
        through, as TCP's retransmissions would once the path is back."""
        self._open.clear()

    def restore(self) -> None:
        self.accepting = True
        self._open.set()

    async def close(self) -> None:
        self.cut()
        for task in list(self._links):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
