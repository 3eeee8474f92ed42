"""The token cache's own rules, on an injected clock: ages, sizes, and what makes it forget."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dialguard.store.tokens import Role, token_hash
from dialguard.web.token_cache import TokenCache, Who

ALICE: Who = ("alice", Role.DIALER)


class Lookups:
    """The database's side, counted: what each token hash is, and how often it was asked."""

    def __init__(self, known: dict[bytes, Who]) -> None:
        self.known = known
        self.asked = 0

    def of(self, digest: bytes) -> Callable[[], Awaitable[Who | None]]:
        async def look_up() -> Who | None:
            self.asked += 1
            return self.known.get(digest)

        return look_up


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def linked(cache: TokenCache) -> TokenCache:
    cache.watch.linked()
    return cache


async def test_a_kept_token_is_served_until_its_age_runs_out() -> None:
    clock, digest = Clock(), token_hash("dg_a")
    db = Lookups({digest: ALICE})
    cache = linked(TokenCache(max_age=5, now=clock))
    assert await cache.identify(digest, db.of(digest)) == ALICE
    clock.now += 4.9
    assert await cache.identify(digest, db.of(digest)) == ALICE
    assert db.asked == 1 and cache.hits == 1
    clock.now += 0.2
    assert await cache.identify(digest, db.of(digest)) == ALICE
    assert db.asked == 2


async def test_zero_keeps_nothing() -> None:
    digest = token_hash("dg_a")
    db = Lookups({digest: ALICE})
    cache = linked(TokenCache(max_age=0))
    for _ in range(3):
        assert await cache.identify(digest, db.of(digest)) == ALICE
    assert db.asked == 3 and len(cache) == 0 and not cache.active


async def test_nothing_is_kept_before_the_link_is_up_or_after_it_is_lost() -> None:
    digest = token_hash("dg_a")
    db = Lookups({digest: ALICE})
    cache = TokenCache(max_age=60)
    await cache.identify(digest, db.of(digest))
    await cache.identify(digest, db.of(digest))
    assert db.asked == 2 and len(cache) == 0
    cache.watch.linked()
    await cache.identify(digest, db.of(digest))
    assert len(cache) == 1
    cache.watch.unlinked()
    assert len(cache) == 0 and not cache.active
    await cache.identify(digest, db.of(digest))
    assert db.asked == 4 and len(cache) == 0


async def test_a_notify_or_a_new_link_forgets_everything() -> None:
    digest = token_hash("dg_a")
    db = Lookups({digest: ALICE})
    cache = linked(TokenCache(max_age=60))
    await cache.identify(digest, db.of(digest))
    cache.watch.notified()
    assert len(cache) == 0
    await cache.identify(digest, db.of(digest))
    cache.watch.linked()  # made again: a NOTIFY may have been missed in between
    assert len(cache) == 0 and db.asked == 2


async def test_an_answer_read_before_a_notify_is_not_kept_after_it() -> None:
    """The revocation commits (and its NOTIFY arrives) while the lookup that read the old row is in flight."""
    digest = token_hash("dg_a")
    cache = linked(TokenCache(max_age=60))
    reading, answered = asyncio.Event(), asyncio.Event()

    async def slow() -> Who | None:
        reading.set()
        await answered.wait()
        return ALICE  # what the row said when it was read

    lookup = asyncio.create_task(cache.identify(digest, slow))
    await reading.wait()
    cache.watch.notified()
    answered.set()
    assert await lookup == ALICE  # this request was authenticated before the revocation
    assert len(cache) == 0  # but the next one asks again


async def test_unknown_tokens_are_kept_briefly_and_apart_so_a_flood_never_evicts_a_good_one() -> None:
    clock, good = Clock(), token_hash("dg_good")
    db = Lookups({good: ALICE})
    cache = linked(TokenCache(max_age=60, unknown_age=1, size=4, unknown_size=8, now=clock))
    await cache.identify(good, db.of(good))
    junk = [token_hash(f"dg_junk{i}") for i in range(1000)]
    for digest in junk:
        assert await cache.identify(digest, db.of(digest)) is None
    assert len(cache) == 1 + 8
    asked = db.asked
    assert await cache.identify(good, db.of(good)) == ALICE
    assert await cache.identify(junk[-1], db.of(junk[-1])) is None
    assert db.asked == asked  # both kept
    clock.now += 1.0
    assert await cache.identify(junk[-1], db.of(junk[-1])) is None
    assert db.asked == asked + 1  # an unknown token is kept one second, not sixty


async def test_the_least_recently_used_good_token_goes_first() -> None:
    db = Lookups({token_hash(f"dg_{i}"): (f"t{i}", Role.DIALER) for i in range(3)})
    cache = linked(TokenCache(max_age=60, size=2))
    a, b, c = (token_hash(f"dg_{i}") for i in range(3))
    for digest in (a, b, a, c):  # b is the least recently used when c comes
        await cache.identify(digest, db.of(digest))
    asked = db.asked
    await cache.identify(a, db.of(a))
    assert db.asked == asked
    await cache.identify(b, db.of(b))
    assert db.asked == asked + 1
