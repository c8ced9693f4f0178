"""The stage profiles 1 / 1.5 / 2, turned into one frozen `Settings`.

Every setting can come from the environment (``MINIGRAM_*``) and from keyword overrides (the
CLI's flags), overrides winning. `Settings.to_env()` is the inverse of `Settings.from_env()`,
which is how `minigram serve` hands its settings to uvicorn's worker processes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

STAGES = ("1", "1.5", "2")

#: Route names, used by fault injection and in metrics labels.
ENDPOINTS = (
    "register",
    "login",
    "logout",
    "upload",
    "photo",
    "delete_photo",
    "media",
    "feed",
    "like",
    "unlike",
    "follow",
    "unfollow",
    "profile",
    "delete_user",
    "logout_all",
    "healthz",
    "metrics",
    "metrics_html",
)

DEFAULT_DATA_DIR = "./.minigram-data"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/minigram"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: bcrypt cost 10 takes ~60 ms per hash on the project's 2-core machine, which with the
#: request's own work reproduces the seed's 70-90 ms register and login (cost 11 doubles it).
DEFAULT_BCRYPT_ROUNDS = 10
DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
#: Load shedding per worker (see minigram.shedding): requests in progress (above the 40
#: threads of the threadpool, so no throughput is lost), waiters, and their longest wait:
#: long enough that only a request which would near the load engine's 10 s timeout anyway is
#: shed, short enough that its client gets a 503 rather than a timeout.
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_MAX_QUEUE = 512
DEFAULT_QUEUE_TIMEOUT = 8.0
#: Hostile clients (see minigram.security and minigram.login_limits): seconds for a whole
#: request body to arrive, and login attempts per (username, client address) -- the "user"
#: limit -- and per client address in a window (0 = no limit). Loopback addresses are exempt
#: from the per-address limit by default, so load tests from 127.0.0.1 are never refused; a
#: successful login hands its attempt back, so logging in never uses up either limit.
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_LOGIN_USER_LIMIT = 10
DEFAULT_LOGIN_IP_LIMIT = 100
DEFAULT_LOGIN_WINDOW = 60.0
DEFAULT_LOGIN_IP_EXEMPT = ("127.0.0.1", "::1")
#: The request head (request line and headers) must fit in this many bytes and arrive within
#: ``header_timeout`` seconds of its first byte (or of the connection opening); an idle
#: keep-alive connection is closed after ``keepalive_timeout`` (see minigram.http_guard).
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
HTTP_IMPLEMENTATIONS = ("httptools", "h11")
#: Seconds a bearer token stays valid after login.
DEFAULT_TOKEN_TTL = 30 * 86_400.0

ENV_PREFIX = "MINIGRAM_"


@dataclass(frozen=True)
class Fault:
    """One injected fault: extra latency or CPU burn on an endpoint (``*`` for all).

    ``seconds`` is absolute; ``fraction`` (from a ``%`` spec) is relative to the time the
    request itself took to handle, so ``delay=25%`` makes that endpoint 25 % slower.
    """

    endpoint: str
    kind: Literal["delay", "cpu"]
    seconds: float = 0.0
    fraction: float | None = None

    def extra(self, handled: float) -> float:
        """Return the extra time this fault adds to a request that took ``handled`` seconds."""
        if self.fraction is not None:
            return handled * self.fraction
        return self.seconds

    def __str__(self) -> str:
        if self.fraction is not None:
            amount = f"{self.fraction * 100:g}%"
        else:
            amount = f"{self.seconds * 1000:g}ms"
        return f"{self.endpoint}:{self.kind}={amount}"


_FAULT_RE = re.compile(
    r"^\s*(?P<endpoint>[A-Za-z_*]+)\s*:\s*(?P<kind>delay|cpu)\s*=\s*"
    r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>%|ms|us|s)\s*$"
)
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse ``"feed:delay=25%;login:delay=20ms;feed:cpu=5ms"`` into faults.

    Raises ValueError naming the bad entry and the valid endpoint names.
    """
    faults: list[Fault] = []
    for entry in spec.split(";"):
        if not entry.strip():
            continue
        match = _FAULT_RE.match(entry)
        if match is None:
            raise ValueError(
                f"bad fault {entry.strip()!r}: expected ENDPOINT:delay=N(ms|s|us|%) "
                "or ENDPOINT:cpu=N(ms|s|us)"
            )
        endpoint, kind = match["endpoint"], match["kind"]
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(
                f"bad fault {entry.strip()!r}: unknown endpoint {endpoint!r}; "
                f"valid: *, {', '.join(ENDPOINTS)}"
            )
        value = float(match["value"])
        if match["unit"] == "%":
            if kind == "cpu":
                raise ValueError(f"bad fault {entry.strip()!r}: cpu takes a time, not a %")
            faults.append(Fault(endpoint, "delay", fraction=value / 100))
        else:
            faults.append(Fault(endpoint, kind, seconds=value * _UNITS[match["unit"]]))  # type: ignore[arg-type]
    return tuple(faults)


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to run one stage. Build it with `for_stage` or `from_env`."""

    stage: str
    data_dir: Path
    media_dir: Path
    database_url: str
    redis_url: str | None
    redis_prefix: str = "minigram:"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    bcrypt_rounds: int = DEFAULT_BCRYPT_ROUNDS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    pool_size: int = 5
    faults: tuple[Fault, ...] = ()
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queue: int = DEFAULT_MAX_QUEUE
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    login_user_limit: int = DEFAULT_LOGIN_USER_LIMIT
    login_ip_limit: int = DEFAULT_LOGIN_IP_LIMIT
    login_window: float = DEFAULT_LOGIN_WINDOW
    login_ip_exempt: tuple[str, ...] = DEFAULT_LOGIN_IP_EXEMPT
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    http: str = "httptools"
    token_ttl: float = DEFAULT_TOKEN_TTL

    # --- what the stage implies -------------------------------------------------------
    @property
    def pooled(self) -> bool:
        """Stage 1 opens a new connection per unit of work; the others reuse a pool."""
        return self.stage != "1"

    @property
    def sqlite_wal(self) -> bool:
        return self.stage == "1.5"

    @property
    def sqlite_busy_timeout(self) -> float:
        """Seconds SQLite waits on a lock: 0 on stage 1, so contention fails as in the seed."""
        return 0.0 if self.stage == "1" else 5.0

    @property
    def cache_backend(self) -> Literal["none", "memory", "redis"]:
        return {"1": "none", "1.5": "memory", "2": "redis"}[self.stage]  # type: ignore[return-value]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # --- construction ----------------------------------------------------------------
    @classmethod
    def for_stage(cls, stage: str | float = "1", **overrides: Any) -> Settings:
        """Build the settings of ``stage``; keyword overrides set fields (None = not given)."""
        stage = _stage(stage)
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        data_dir = Path(given.pop("data_dir", DEFAULT_DATA_DIR)).expanduser().absolute()
        media_dir = Path(given.pop("media_dir", data_dir / "media")).expanduser().absolute()
        if stage == "2":
            default_url = DEFAULT_PG_URL
            default_redis: str | None = DEFAULT_REDIS_URL
            default_workers = os.cpu_count() or 1
            default_pool = 10
        else:
            default_url = f"sqlite:///{data_dir / 'minigram.db'}"
            default_redis = None
            default_workers = 1
            default_pool = 5
        faults = given.pop("faults", ())
        if isinstance(faults, str):
            faults = parse_faults(faults)
        settings = cls(
            stage=stage,
            data_dir=data_dir,
            media_dir=media_dir,
            database_url=str(given.pop("database_url", default_url)),
            redis_url=given.pop("redis_url", default_redis),
            workers=int(given.pop("workers", default_workers)),
            pool_size=int(given.pop("pool_size", default_pool)),
            faults=tuple(faults),
            **given,
        )
        settings.validate()
        return settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MINIGRAM_*`` variables, then apply ``overrides`` (None = not given)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, convert in _ENV_FIELDS.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[name] = convert(raw)
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        stage = values.pop("stage", "1")
        return cls.for_stage(stage, **values)

    def to_env(self) -> dict[str, str]:
        """The ``MINIGRAM_*`` variables that make `from_env` rebuild these settings."""
        env = {
            "MINIGRAM_STAGE": self.stage,
            "MINIGRAM_DATA_DIR": str(self.data_dir),
            "MINIGRAM_MEDIA_DIR": str(self.media_dir),
            "MINIGRAM_DATABASE_URL": self.database_url,
            "MINIGRAM_REDIS_PREFIX": self.redis_prefix,
            "MINIGRAM_HOST": self.host,
            "MINIGRAM_PORT": str(self.port),
            "MINIGRAM_WORKERS": str(self.workers),
            "MINIGRAM_BCRYPT_ROUNDS": str(self.bcrypt_rounds),
            "MINIGRAM_MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "MINIGRAM_POOL_SIZE": str(self.pool_size),
            "MINIGRAM_FAULTS": ";".join(str(f) for f in self.faults),
            "MINIGRAM_MAX_CONCURRENCY": str(self.max_concurrency),
            "MINIGRAM_MAX_QUEUE": str(self.max_queue),
            "MINIGRAM_QUEUE_TIMEOUT": repr(self.queue_timeout),
            "MINIGRAM_BODY_TIMEOUT": repr(self.body_timeout),
            "MINIGRAM_LOGIN_USER_LIMIT": str(self.login_user_limit),
            "MINIGRAM_LOGIN_IP_LIMIT": str(self.login_ip_limit),
            "MINIGRAM_LOGIN_WINDOW": repr(self.login_window),
            "MINIGRAM_LOGIN_IP_EXEMPT": ",".join(self.login_ip_exempt) or ",",
            "MINIGRAM_MAX_HEADER_BYTES": str(self.max_header_bytes),
            "MINIGRAM_HEADER_TIMEOUT": repr(self.header_timeout),
            "MINIGRAM_KEEPALIVE_TIMEOUT": repr(self.keepalive_timeout),
            "MINIGRAM_HTTP": self.http,
            "MINIGRAM_TOKEN_TTL": repr(self.token_ttl),
        }
        if self.redis_url is not None:
            env["MINIGRAM_REDIS_URL"] = self.redis_url
        return env

    def validate(self) -> None:
        if self.stage in ("1", "1.5") and self.workers != 1:
            raise ValueError(f"stage {self.stage} runs one process; --workers must be 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 4 <= self.bcrypt_rounds <= 31:
            raise ValueError("bcrypt rounds must be between 4 and 31")
        if self.max_upload_bytes < 1:
            raise ValueError("max upload bytes must be positive")
        if self.pool_size < 1:
            raise ValueError("pool size must be at least 1")
        if self.max_concurrency < 0 or self.max_queue < 0 or self.queue_timeout < 0:
            raise ValueError("max concurrency, max queue and queue timeout must not be negative")
        if not self.body_timeout > 0 or not self.login_window > 0:
            raise ValueError("body timeout and login window must be positive")
        if self.login_user_limit < 0 or self.login_ip_limit < 0:
            raise ValueError("login limits must not be negative (0 = no limit)")
        if self.max_header_bytes < 1024:
            raise ValueError("max header bytes must be at least 1024")
        if not (self.header_timeout > 0 and self.keepalive_timeout > 0 and self.token_ttl > 0):
            raise ValueError("header timeout, keep-alive timeout and token TTL must be positive")
        if self.http not in HTTP_IMPLEMENTATIONS:
            raise ValueError(f"unknown HTTP implementation {self.http!r}; valid: httptools, h11")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.stage == "2" and not self.redis_url:
            raise ValueError("stage 2 needs a Redis URL")
        if self.stage == "2" and self.is_sqlite:
            raise ValueError("stage 2 runs on PostgreSQL, not SQLite")

    def replace(self, **changes: Any) -> Settings:
        settings = dataclasses.replace(self, **changes)
        settings.validate()
        return settings


def _stage(value: str | float) -> str:
    text = str(value).strip()
    if text == "1.0":
        text = "1"
    if text == "2.0":
        text = "2"
    if text not in STAGES:
        raise ValueError(f"unknown stage {value!r}; valid: {', '.join(STAGES)}")
    return text


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be a number of seconds, not negative")
    return value


def _addresses(raw: str) -> tuple[str, ...]:
    """``"127.0.0.1,::1"``; ``","`` is the empty list (an empty variable means "default")."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_ENV_FIELDS: dict[str, Any] = {
    "stage": _stage,
    "data_dir": Path,
    "media_dir": Path,
    "database_url": str,
    "redis_url": str,
    "redis_prefix": str,
    "host": str,
    "port": _positive_int,
    "workers": _positive_int,
    "bcrypt_rounds": _positive_int,
    "max_upload_bytes": _positive_int,
    "pool_size": _positive_int,
    "faults": parse_faults,
    "max_concurrency": _positive_int,
    "max_queue": _positive_int,
    "queue_timeout": _seconds,
    "body_timeout": _seconds,
    "login_user_limit": _positive_int,
    "login_ip_limit": _positive_int,
    "login_window": _seconds,
    "login_ip_exempt": _addresses,
    "max_header_bytes": _positive_int,
    "header_timeout": _seconds,
    "keepalive_timeout": _seconds,
    "http": str,
    "token_ttl": _seconds,
}
