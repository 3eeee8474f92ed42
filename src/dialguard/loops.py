"""The event loop ``serve`` runs on: uvloop (libuv) unless ``gate.event_loop`` asks for asyncio's own.

Only ``serve`` is on the call path: the other commands run on asyncio's loop, whatever the setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dialguard.config import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(name: str) -> LoopFactory | None:
    """What ``asyncio.Runner`` makes its loop with for ``gate.event_loop``; None: asyncio's own."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "gate.event_loop is uvloop but uvloop is not installed: reinstall dialguard with its "
            'dependencies, or set gate.event_loop = "asyncio" (DIALGUARD_GATE_EVENT_LOOP=asyncio)'
        ) from None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """uvloop or asyncio, for the ready line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
