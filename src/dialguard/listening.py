"""What a listener that cannot bind says: the setting that names the address, and what to change."""

from __future__ import annotations

import errno
import os


def cannot_listen(section: str, host: str, port: int, reuse_port: bool, exc: OSError) -> OSError:
    """``exc`` from binding ``[section]``'s listener, as one line naming the keys (the CLI prints it)."""
    where = f"{host}:{port}"
    code = exc.errno or 0
    if code == errno.EADDRINUSE and not reuse_port:
        text = (
            f"{section}.port: {where} is in use (another dialguard serve, or another program); several "
            f"gateway processes share one port only when every one of them sets {section}.reuse_port = "
            f"true (DIALGUARD_{section.upper()}_REUSE_PORT)"
        )
    elif code == errno.EADDRINUSE:
        # The kernel shares a port only among sockets that all asked, of one user.
        text = (
            f"{section}.port: {where} is in use by a process without {section}.reuse_port, or one running "
            "as another user: SO_REUSEPORT shares a port only among processes of one user that all set it"
        )
    else:
        why = os.strerror(code) if code else str(exc)
        text = f"{section}.host, {section}.port: cannot listen on {where}: {why}"
    return OSError(code, text)
