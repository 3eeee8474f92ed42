"""Bearer tokens already looked up, so that a request's token check takes no connection (issue 15).

Keyed by the token's SHA-256, as the table is: the plain token is never kept, and a dict probe on a
hash, like the database's index probe on it, leaks through its timing nothing that helps find a token.

A kept answer is trusted only while all of these hold:

- the process's LISTEN link is up (the event hub's connection, :class:`~dialguard.events.ChannelWatch`):
  every change to api_tokens is NOTIFYed at its commit (migration 0012) and forgets everything here;
  the link lost or made again also forgets everything (a NOTIFY may have been missed meanwhile), and
  nothing is kept until it is back;
- it is younger than ``max_age`` seconds (``http.token_cache_seconds``; 0: no cache): the bound on a
  revoked token's life should the link die silently, before the hub notices;
- no NOTIFY, link loss or reconnect came while it was being looked up (a generation count), so that an
  answer read before a revocation cannot be kept after the revocation's NOTIFY.

Unknown tokens are kept too, for at most ``unknown_age`` seconds and in a smaller LRU of their own, so
that a flood of made-up tokens costs one lookup each and never pushes a good token out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from dialguard.events import ChannelWatch
from dialguard.store.tokens import Role

CHANNEL = "dialguard_tokens"  # the trigger of migration 0012 notifies it

Who = tuple[str, Role]


class TokenCache:
    def __init__(
        self,
        *,
        max_age: float,
        unknown_age: float = 1.0,
        size: int = 1024,
        unknown_size: int = 256,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.unknown_age = min(unknown_age, max_age)
        self.size = size
        self.unknown_size = unknown_size
        self._now = now
        self._known: OrderedDict[bytes, tuple[float, Who]] = OrderedDict()
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        self._linked = False
        self._generation = 0
        self.hits = 0
        self.misses = 0
        self.cleared = 0
        self.watch = ChannelWatch(CHANNEL, notified=self.clear, linked=self._link, unlinked=self._unlink)

    @property
    def active(self) -> bool:
        """Whether answers are kept and served now: enabled, and the LISTEN link is up."""
        return self.max_age > 0 and self._linked

    def __len__(self) -> int:
        return len(self._known) + len(self._unknown)

    async def identify(self, digest: bytes, look_up: Callable[[], Awaitable[Who | None]]) -> Who | None:
        """The (name, role) of the token whose hash is ``digest``, or None: kept, or from ``look_up``."""
        if self.active:
            found, who = self._get(digest)
            if found:
                self.hits += 1
                return who
        self.misses += 1
        generation = self._generation
        who = await look_up()
        if self.active and generation == self._generation:
            self._put(digest, who)
        return who

    def clear(self) -> None:
        self._known.clear()
        self._unknown.clear()
        self._generation += 1
        self.cleared += 1

    def _link(self) -> None:
        self.clear()
        self._linked = True

    def _unlink(self) -> None:
        self._linked = False
        self.clear()

    def _get(self, digest: bytes) -> tuple[bool, Who | None]:
        now = self._now()
        if (kept := self._known.get(digest)) is not None:
            at, who = kept
            if now - at < self.max_age:
                self._known.move_to_end(digest)
                return True, who
            del self._known[digest]
        if (at_unknown := self._unknown.get(digest)) is not None:
            if now - at_unknown < self.unknown_age:
                return True, None
            del self._unknown[digest]
        return False, None

    def _put(self, digest: bytes, who: Who | None) -> None:
        now = self._now()
        if who is None:
            self._unknown[digest] = now
            self._unknown.move_to_end(digest)
            while len(self._unknown) > self.unknown_size:
                self._unknown.popitem(last=False)
        else:
            self._known[digest] = (now, who)
            self._known.move_to_end(digest)
            while len(self._known) > self.size:
                self._known.popitem(last=False)
