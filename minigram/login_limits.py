"""Login throttling: attempts per (account, client address) and per client address, in a
sliding window, each attempt counted BEFORE its password is checked.

* `LoginLimiter.reserve` counts the attempt under both keys at once, or refuses it with 429
  and ``Retry-After`` if either is at its limit. Counting first is what makes the limit
  hold under concurrency: 40 parallel wrong logins with a limit of 10 get 10 x 401.
* A wrong password keeps its reservation: it is a failure. A success clears the pair's
  failures and hands back its reservation of the address, so logging in never uses up a
  limit (load tests log in many users); anything else (the database is down) hands both back.
  Attempts still in flight count: more than the limit at once for one account from one
  address are refused even with the right password.
* The account key is the account AND the address: an attacker's failures from one address
  throttle that address for that account only, and the owner logging in from another
  address is not locked out (OWASP: throttle, do not lock). The per-address limit caps one
  address over all accounts (password spraying). Loopback addresses are exempt from it by
  default (load tests come from 127.0.0.1), never from the pair limit.
* Stage 2 keeps the counts in Redis, one Lua script per reservation, shared by all workers.
  If Redis fails, a worker counts in its own process until Redis answers again (with N
  workers an attacker then gets at most N times the limit). Stages 1 and 1.5 count in the
  process, on the event loop, with no await between the check and the count.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from minigram.errors import ApiError
from minigram.settings import Settings
from minigram.usernames import fold

logger = logging.getLogger("minigram")

LOOPBACK = ("127.0.0.1", "::1")

#: KEYS: the keys to count under; ARGV: window (ms), member, then each key's limit.
#: Returns 0 (counted under every key) or the milliseconds until a slot frees up.
RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local edge = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(edge[2]) + window - now)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, window)
end
return 0
"""


class WindowCounts:
    """Attempts per key over the last ``window`` seconds, for at most ``max_keys`` keys (the
    least recently touched go first). Each attempt is a unique member, so it can be handed
    back."""

    def __init__(
        self, window: float, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._events: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()

    def _live(self, key: str, now: float) -> deque[tuple[float, str]]:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        while events and events[0][0] <= now - self.window:
            events.popleft()
        return events

    def reserve(self, limits: Sequence[tuple[str, int]], member: str) -> float | None:
        """Count ``member`` under every key, unless one is at its limit: then count nothing
        and return the seconds until that key frees up."""
        now = self.clock()
        live = [(self._live(key, now), limit) for key, limit in limits]
        waits = [
            events[-limit][0] + self.window - now for events, limit in live if len(events) >= limit
        ]
        if waits:
            return max(waits)
        for events, _ in live:
            events.append((now, member))
        return None

    def release(self, keys: Iterable[str], member: str) -> None:
        for key in keys:
            events = self._events.get(key)
            if events is not None:
                kept = [event for event in events if event[1] != member]
                events.clear()
                events.extend(kept)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)

    def __len__(self) -> int:
        return len(self._events)


@dataclass(frozen=True)
class Attempt:
    """One reserved login attempt: the keys it counts under and its member there."""

    pair: str
    keys: tuple[str, ...]
    member: str
    in_redis: bool


class LoginLimiter:
    """Attempts per (account, address) and per address (see the module docstring)."""

    def __init__(
        self,
        pair_limit: int,
        ip_limit: int,
        window: float,
        exempt_ips: Iterable[str] = LOOPBACK,
        *,
        redis_client: Any = None,
        prefix: str = "minigram:",
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pair_limit = pair_limit
        self.ip_limit = ip_limit
        self.window = window
        self.exempt_ips = frozenset(exempt_ips)
        self.local = WindowCounts(window, clock=clock)
        self.prefix = prefix
        self.retry_interval = retry_interval
        self._redis = redis_client
        self._script = redis_client.register_script(RESERVE_LUA) if redis_client else None
        self._down_until = 0.0

    def _limits(self, username: str, ip: str) -> list[tuple[str, int]]:
        # Valid usernames have at most 30 characters: truncating keeps hostile 64 KB names
        # from filling memory.
        limits = []
        if self.pair_limit > 0:
            limits.append((f"{self.prefix}login:pair:{fold(username[:64])}|{ip}", self.pair_limit))
        if self.ip_limit > 0 and ip not in self.exempt_ips:
            limits.append((f"{self.prefix}login:ip:{ip}", self.ip_limit))
        return limits

    async def reserve(self, username: str, ip: str) -> Attempt:
        """Count one attempt, or raise 429 with ``Retry-After`` if a limit is reached."""
        limits = self._limits(username, ip)
        member = secrets.token_hex(8)
        attempt = Attempt(limits[0][0] if self.pair_limit > 0 else "",
                          tuple(key for key, _ in limits), member, False)
        if not limits:
            return attempt
        wait: float | None = None
        if self._redis_usable():
            try:
                ms = await self._script(
                    keys=list(attempt.keys),
                    args=[int(self.window * 1000), member, *(limit for _, limit in limits)],
                )
                wait = float(ms) / 1000 if float(ms) > 0 else None
                attempt = Attempt(attempt.pair, attempt.keys, member, True)
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)
                wait = self.local.reserve(limits, member)
        else:
            wait = self.local.reserve(limits, member)
        if wait is not None:
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed logins; retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: forget the pair's failures, hand back the address slot."""
        others = [key for key in attempt.keys if key != attempt.pair]
        if attempt.in_redis:
            await self._redis_call(self._redis_succeeded, attempt, others)
        else:
            if attempt.pair:
                self.local.clear(attempt.pair)
            self.local.release(others, attempt.member)

    async def release(self, attempt: Attempt) -> None:
        """The attempt said nothing about the password (an error): hand back every slot."""
        if attempt.in_redis:
            await self._redis_call(self._redis_release, attempt, list(attempt.keys))
        else:
            self.local.release(attempt.keys, attempt.member)

    async def _redis_succeeded(self, attempt: Attempt, others: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            if attempt.pair:
                pipe.delete(attempt.pair)
            for key in others:
                pipe.zrem(key, attempt.member)
            await pipe.execute()

    async def _redis_release(self, attempt: Attempt, keys: list[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, attempt.member)
            await pipe.execute()

    async def _redis_call(self, op: Callable[..., Any], *args: Any) -> None:
        try:
            await op(*args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed(exc)

    def _redis_usable(self) -> bool:
        return self._script is not None and time.monotonic() >= self._down_until

    def _redis_failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            logger.warning("redis unavailable, counting logins in this process: %s", exc)
        self._down_until = time.monotonic() + self.retry_interval

    async def close(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except Exception:  # pragma: no cover - closing a dead connection
                pass


def create_limiter(settings: Settings) -> LoginLimiter:
    """The settings' limiter: in Redis on stage 2, in the process on the others."""
    client = None
    if settings.cache_backend == "redis" and settings.redis_url:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = aioredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=0.25,
            socket_timeout=0.25,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
    return LoginLimiter(
        settings.login_user_limit,
        settings.login_ip_limit,
        settings.login_window,
        settings.login_ip_exempt,
        redis_client=client,
        prefix=settings.redis_prefix,
    )
