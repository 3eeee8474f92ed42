"""Build the roaming service the configuration asks for; the HTTP session lives as long as it does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg

from dialguard.clock import Clock
from dialguard.config import ConfigError, HlrSettings
from dialguard.hlr.breaker import CircuitBreaker
from dialguard.hlr.providers import FileProvider, HlrError, HlrProvider, HttpProvider
from dialguard.hlr.service import RoamingService


@asynccontextmanager
async def open_roaming(
    settings: HlrSettings,
    *,
    pool: asyncpg.Pool,
    clock: Clock,
    observe: Callable[[str, float], None] | None = None,
) -> AsyncIterator[RoamingService | None]:
    """None when no provider is configured: a look-up the rules ask for is then ``roaming.unknown``.
    ``observe``: told of each vendor look-up (the metrics)."""
    if settings.provider == "none":
        yield None
        return
    breaker = CircuitBreaker(
        failures=settings.breaker_failures, reset_after=settings.breaker_reset, monotonic=time.monotonic
    )

    def service(provider: HlrProvider) -> RoamingService:
        return RoamingService(
            pool=pool,
            provider=provider,
            clock=clock,
            ttl=settings.cache_ttl,
            deadline=settings.deadline,
            concurrency=settings.concurrency,
            breaker=breaker,
            observe=observe,
        )

    if settings.provider == "file":
        if settings.file is None:
            raise ConfigError("hlr.file: the file provider needs a CSV path (number,status,visited_country)")
        try:
            provider: HlrProvider = FileProvider(settings.file)
        except OSError as exc:
            raise ConfigError(f"hlr.file: cannot read {settings.file}: {exc.strerror}") from None
        except HlrError as exc:  # a visited_country that is neither an ISO code nor a known MCC
            raise ConfigError(f"hlr.file: {settings.file}: {exc}") from None
        yield service(provider)
        return
    if settings.provider != "http":
        raise ConfigError(f"hlr.provider: {settings.provider!r} is not none, http or file")
    if not settings.url:
        raise ConfigError(
            "hlr.url: the http provider needs a URL template, e.g. https://.../lookup?msisdn={digits}"
        )
    async with aiohttp.ClientSession() as session:
        try:
            provider = HttpProvider(
                session=session,
                url=settings.url,
                method=settings.method,
                mapping={str(k): str(v) for k, v in settings.mapping.items()},
                auth_header=settings.auth_header,
                auth_value=settings.auth_value.value if settings.auth_value else "",
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        yield service(provider)
