"""The line a listener that cannot bind leaves: the keys that name the address, and what to change."""

from __future__ import annotations

import errno
import os
import socket

from dialguard.listening import cannot_listen


def _bind_error(host: str, port: int, *, reuse_port: bool = False) -> OSError:
    with socket.socket() as s:
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    raise AssertionError(f"{host}:{port} could be bound")


def test_a_port_in_use_names_the_setting_that_shares_it() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        plain = cannot_listen("agi", "127.0.0.1", port, False, _bind_error("127.0.0.1", port))
        # The holder did not ask to share: a process with the setting is refused too, and told why.
        shared = cannot_listen(
            "http", "127.0.0.1", port, True, _bind_error("127.0.0.1", port, reuse_port=True)
        )
    assert plain.errno == errno.EADDRINUSE
    assert plain.strerror == (
        f"agi.port: 127.0.0.1:{port} is in use (another dialguard serve, or another program); several "
        "gateway processes share one port only when every one of them sets agi.reuse_port = true "
        "(DIALGUARD_AGI_REUSE_PORT)"
    )
    assert shared.strerror is not None
    assert shared.strerror.startswith(
        f"http.port: 127.0.0.1:{port} is in use by a process without http.reuse_port"
    )
    assert "processes of one user" in shared.strerror


def test_an_address_not_here_names_host_and_port() -> None:
    host = "192.0.2.1"  # TEST-NET-1: no interface here has it
    exc = cannot_listen("agi", host, 4573, False, _bind_error(host, 0))
    assert exc.errno == errno.EADDRNOTAVAIL
    assert (
        exc.strerror
        == f"agi.host, agi.port: cannot listen on {host}:4573: {os.strerror(errno.EADDRNOTAVAIL)}"
    )
