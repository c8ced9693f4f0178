"""One `Cache` protocol, three backends: none (stage 1), in-process (1.5), Redis (2).

The app uses the cache read-through only: a miss, or a cache that is down, means "ask the
database". So `RedisCache` never raises: a failing call opens a circuit for
``retry_interval`` seconds, during which every call is an instant miss / no-op, and the next
call after that tries Redis again. Because writes done while Redis was unreachable could not
invalidate anything, the first successful call after an outage bumps an *epoch* that is part
of every key, which orphans (and lets expire) everything cached before. Other workers re-read
the epoch at least once a second.

Every Redis key starts with the configured prefix (default ``minigram:``).
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from redis.exceptions import RedisError

from minigram import metrics, timing
from minigram.settings import Settings

logger = logging.getLogger("minigram")

T = TypeVar("T")

#: Version counters live this long; cached values always expire much sooner.
VERSION_TTL = 86_400


class Cache(Protocol):
    """A byte-string cache. Keys are the app's own names; backends add any prefix."""

    backend: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, None for a miss (or when the cache is down)."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Store ``items``, each expiring after ``ttl`` seconds."""
        ...

    async def add_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        """Store those of ``items`` whose key holds no value yet (Redis ``SET NX``)."""
        ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    async def bump(self, keys: Sequence[str]) -> None:
        """Increment version counters (creating them at 1)."""
        ...

    async def store(self, groups: Sequence[tuple[Mapping[str, bytes], float]]) -> None:
        """`set_many` for several (items, ttl) groups, in one round trip."""
        ...

    async def invalidate(self, delete: Sequence[str], bump: Sequence[str]) -> None:
        """`delete` then `bump`, in one round trip."""
        ...

    async def feed_bundle(self, digest: str, limit: int, cursor: str) -> FeedBundle:
        """Everything a cached feed page needs, in one round trip (see `FeedBundle`)."""
        ...

    async def health(self) -> dict[str, Any]:
        """``{"status": "ok" | "degraded" | "disabled", ...}``"""
        ...

    async def close(self) -> None: ...


class FeedBundle(NamedTuple):
    """What ``GET /api/feed`` reads from the cache, each step keyed by the one before.

    ``token`` is ``tok:<digest>``; then, if it names a user id, ``version`` is
    ``feedver:<id>`` (``b"0"`` when there is none) and ``page`` is
    ``feed:<id>:<version>:<limit>:<cursor>``; then, if the page is cached, ``photos`` holds
    ``photo:<i>``, ``likes:<i>`` and ``liked:<id>:<i>`` for each photo id of the page, in that
    order (three values per photo). The key names are those of `minigram.cached`.
    """

    token: bytes | None
    version: bytes | None
    page: bytes | None
    photos: list[bytes | None]


_TOKEN_USER = re.compile(rb"^\[(\d+),")
_PAGE_IDS = re.compile(rb'"ids":\[([\d,]*)\]')


async def chained_feed_bundle(cache: Cache, digest: str, limit: int, cursor: str) -> FeedBundle:
    """`Cache.feed_bundle` as successive `get_many` calls (for the in-process backends)."""
    (token,) = await cache.get_many([f"tok:{digest}"])
    found = _TOKEN_USER.match(token) if token is not None else None
    if found is None:
        return FeedBundle(token, None, None, [])
    user = found.group(1).decode()
    (version,) = await cache.get_many([f"feedver:{user}"])
    version = version or b"0"
    (page,) = await cache.get_many([f"feed:{user}:{version.decode()}:{limit}:{cursor}"])
    ids = _PAGE_IDS.search(page) if page is not None else None
    if ids is None:
        return FeedBundle(token, version, page, [])
    keys = []
    for raw in ids.group(1).split(b","):
        if raw:
            i = raw.decode()
            keys += [f"photo:{i}", f"likes:{i}", f"liked:{user}:{i}"]
    return FeedBundle(token, version, page, await cache.get_many(keys) if keys else [])


#: `RedisCache.feed_bundle`: the same chain as `chained_feed_bundle`, run inside Redis.
#: KEYS[1] is the token's key; ARGV[1] the prefix (with the epoch), ARGV[2] the limit,
#: ARGV[3] the cursor. The other keys are derived from values, so this needs a standalone
#: Redis (not a cluster), which is what stage 2 runs.
FEED_SCRIPT = """
local token = redis.call('GET', KEYS[1])
if not token then return {false, false, false, {}} end
local user = string.match(token, '^%[(%d+),')
if not user then return {token, false, false, {}} end
local base = ARGV[1]
local version = redis.call('GET', base .. 'feedver:' .. user) or '0'
local page = redis.call('GET', base .. 'feed:' .. user .. ':' .. version .. ':' .. ARGV[2]
                        .. ':' .. ARGV[3])
if not page then return {token, version, false, {}} end
local ids = string.match(page, '"ids":%[([%d,]*)%]')
if not ids then return {token, version, page, {}} end
local keys = {}
for id in string.gmatch(ids, '%d+') do
  keys[#keys + 1] = base .. 'photo:' .. id
  keys[#keys + 1] = base .. 'likes:' .. id
  keys[#keys + 1] = base .. 'liked:' .. user .. ':' .. id
end
if #keys == 0 then return {token, version, page, {}} end
return {token, version, page, redis.call('MGET', unpack(keys))}
"""


class NullCache:
    """Stage 1: no cache at all."""

    backend = "none"

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [None] * len(keys)

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        return None

    async def add_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        return None

    async def delete(self, keys: Sequence[str]) -> None:
        return None

    async def bump(self, keys: Sequence[str]) -> None:
        return None

    async def store(self, groups: Sequence[tuple[Mapping[str, bytes], float]]) -> None:
        return None

    async def invalidate(self, delete: Sequence[str], bump: Sequence[str]) -> None:
        return None

    async def feed_bundle(self, digest: str, limit: int, cursor: str) -> FeedBundle:
        return FeedBundle(None, None, None, [])

    async def health(self) -> dict[str, Any]:
        return {"status": "disabled", "backend": self.backend}

    async def close(self) -> None:
        return None


class MemoryCache:
    """Stage 1.5: a TTL + LRU dict in the (single) process, used from the event loop only."""

    backend = "memory"

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def _get(self, keys: Sequence[str], now: float) -> list[bytes | None]:
        data = self._data
        values: list[bytes | None] = []
        for key in keys:
            entry = data.get(key)
            if entry is None:
                values.append(None)
            elif entry[1] <= now:
                del data[key]
                values.append(None)
            else:
                data.move_to_end(key)
                values.append(entry[0])
        return values

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with timing.timed("cache"):
            values = self._get(keys, time.monotonic())
            _count(values)
            return values

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        with timing.timed("cache"):
            expires = time.monotonic() + ttl
            for key, value in items.items():
                self._data[key] = (value, expires)
                self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    async def add_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        now = time.monotonic()
        fresh = {}
        for key, value in items.items():
            entry = self._data.get(key)
            if entry is None or entry[1] <= now:
                fresh[key] = value
        await self.set_many(fresh, ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        with timing.timed("cache"):
            for key in keys:
                self._data.pop(key, None)

    async def bump(self, keys: Sequence[str]) -> None:
        with timing.timed("cache"):
            now = time.monotonic()
            for key in keys:
                entry = self._data.get(key)
                current = int(entry[0]) if entry is not None and entry[1] > now else 0
                self._data[key] = (str(current + 1).encode(), now + VERSION_TTL)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    async def store(self, groups: Sequence[tuple[Mapping[str, bytes], float]]) -> None:
        for items, ttl in groups:
            if items:
                await self.set_many(items, ttl)

    async def invalidate(self, delete: Sequence[str], bump: Sequence[str]) -> None:
        await self.delete(delete)
        await self.bump(bump)

    async def feed_bundle(self, digest: str, limit: int, cursor: str) -> FeedBundle:
        """The chain of `chained_feed_bundle`, timed and counted once."""
        with timing.timed("cache"):
            now = time.monotonic()
            get = self._get
            (token,) = get([f"tok:{digest}"], now)
            found = _TOKEN_USER.match(token) if token is not None else None
            if found is None:
                _count([token])
                return FeedBundle(token, None, None, [])
            user = found.group(1).decode()
            (version,) = get([f"feedver:{user}"], now)
            version = version or b"0"
            (page,) = get([f"feed:{user}:{version.decode()}:{limit}:{cursor}"], now)
            ids = _PAGE_IDS.search(page) if page is not None else None
            photos: list[bytes | None] = []
            if ids is not None:
                keys = []
                for raw in ids.group(1).split(b","):
                    if raw:
                        i = raw.decode()
                        keys += [f"photo:{i}", f"likes:{i}", f"liked:{user}:{i}"]
                photos = get(keys, now)
            _count([token, page, *photos])
            return FeedBundle(token, version, page, photos)

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "backend": self.backend, "entries": len(self._data)}

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Stage 2: Redis, with short timeouts, no client retries, and a circuit breaker."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "minigram:",
        *,
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        epoch_refresh: float = 1.0,
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.epoch_refresh = epoch_refresh
        self._client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self._down_until = 0.0
        self._outage = False
        self._last_error: str | None = None
        self._epoch = "0"
        self._epoch_read_at = float("-inf")
        self._feed_script = self._client.register_script(FEED_SCRIPT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}{self._epoch}:{key}"

    async def _call(self, op: Callable[[], Awaitable[T]], *, force: bool = False) -> T | None:
        """Run ``op`` against Redis; None if the circuit is open or the call failed."""
        if not force and time.monotonic() < self._down_until:
            return None
        start = time.perf_counter()
        try:
            if self._outage:
                # Back after an outage: orphan everything cached before it.
                self._epoch = str(await self._client.incr(self.prefix + "epoch"))
                self._epoch_read_at = time.monotonic()
                self._outage = False
                logger.warning("redis is back; cache epoch is now %s", self._epoch)
            elif time.monotonic() - self._epoch_read_at > self.epoch_refresh:
                raw = await self._client.get(self.prefix + "epoch")
                self._epoch = _text(raw) if raw is not None else "0"
                self._epoch_read_at = time.monotonic()
            return await op()
        except (TimeoutError, OSError, RedisError) as exc:
            if not self._outage:
                logger.warning("redis unavailable, serving from the database: %s", exc)
            self._outage = True
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._down_until = time.monotonic() + self.retry_interval
            metrics.cache_error()
            return None
        finally:
            timing.add("cache", time.perf_counter() - start)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []

        async def op() -> list[bytes | None]:
            values = await self._client.mget([self._key(k) for k in keys])
            return [v.encode() if isinstance(v, str) else v for v in values]

        values = await self._call(op)
        if values is None:
            values = [None] * len(keys)
        _count(values)
        return values

    async def set_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        if not items:
            return

        async def op() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self._key(key), value, px=int(ttl * 1000))
                await pipe.execute()

        await self._call(op)

    async def add_many(self, items: Mapping[str, bytes], ttl: float) -> None:
        if not items:
            return

        async def op() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self._key(key), value, px=int(ttl * 1000), nx=True)
                await pipe.execute()

        await self._call(op)

    async def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return

        async def op() -> None:
            await self._client.delete(*[self._key(k) for k in keys])

        await self._call(op)

    async def bump(self, keys: Sequence[str]) -> None:
        if not keys:
            return

        async def op() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(self._key(key))
                    pipe.expire(self._key(key), VERSION_TTL)
                await pipe.execute()

        await self._call(op)

    async def store(self, groups: Sequence[tuple[Mapping[str, bytes], float]]) -> None:
        if not any(items for items, _ in groups):
            return

        async def op() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for items, ttl in groups:
                    for key, value in items.items():
                        pipe.set(self._key(key), value, px=int(ttl * 1000))
                await pipe.execute()

        await self._call(op)

    async def invalidate(self, delete: Sequence[str], bump: Sequence[str]) -> None:
        if not delete and not bump:
            return

        async def op() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                if delete:
                    pipe.delete(*[self._key(k) for k in delete])
                for key in bump:
                    pipe.incr(self._key(key))
                    pipe.expire(self._key(key), VERSION_TTL)
                await pipe.execute()

        await self._call(op)

    async def feed_bundle(self, digest: str, limit: int, cursor: str) -> FeedBundle:
        async def op() -> FeedBundle:
            token, version, page, photos = await self._feed_script(
                keys=[self._key(f"tok:{digest}")],
                args=[f"{self.prefix}{self._epoch}:", limit, cursor],
            )
            return FeedBundle(token, version, page, list(photos))

        bundle = await self._call(op)
        if bundle is None:
            bundle = FeedBundle(None, None, None, [])
        _count([bundle.token, *([bundle.page] if bundle.token is not None else []), *bundle.photos])
        return bundle

    async def health(self) -> dict[str, Any]:
        async def op() -> bool:
            return bool(await self._client.ping())

        ok = await self._call(op, force=True)
        if ok:
            return {"status": "ok", "backend": self.backend}
        return {"status": "degraded", "backend": self.backend, "error": self._last_error}

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # pragma: no cover - closing a dead connection
            pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _count(values: Sequence[bytes | None]) -> None:
    hits = sum(1 for v in values if v is not None)
    metrics.cache_lookups(hits, len(values) - hits)


def create_cache(settings: Settings) -> Cache:
    if settings.cache_backend == "redis":
        assert settings.redis_url is not None
        return RedisCache(settings.redis_url, settings.redis_prefix)
    if settings.cache_backend == "memory":
        return MemoryCache()
    return NullCache()
