"""The Minigram harness's options (``--stage``, backends, seed sizes, the duet checkout)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.plugin.options import (
    Option,
    add_options,
    parse_count,
    raw_value,
    usage_error,
)

STAGES = ("1", "1.5", "2")

OPTIONS: tuple[Option, ...] = (
    Option("--stage", "minigram_stage",
           "Minigram stage(s) to test: 1, 1.5, 2 or all; several as 1,2 (default: 1)",
           default="1", metavar="STAGES"),
    Option("--minigram-bind", "minigram_bind",
           "Address the Minigram servers listen on and are reached at: a loopback address "
           "(default: 127.0.0.1), or one that remote xdist workers reach",
           default="127.0.0.1", metavar="HOST"),
    Option("--minigram-duet", "minigram_duet",
           "Measure a baseline side by side: also start Minigram from the checkout at PATH "
           "(e.g. a git worktree of main) and run each perf test's rounds against it and "
           "this checkout in turn; --minigram-compare-fail then gates on the pair",
           metavar="PATH"),
    Option("--minigram-pg-url", "minigram_pg_url",
           "PostgreSQL server for stage 2 (default: $MINIGRAM_PG_URL, else a throwaway server)",
           env="MINIGRAM_PG_URL", metavar="URL"),
    Option("--minigram-redis-url", "minigram_redis_url",
           "Redis server for stage 2 (default: $MINIGRAM_REDIS_URL, else a throwaway server)",
           env="MINIGRAM_REDIS_URL", metavar="URL"),
    Option("--minigram-require-backends", "minigram_require_backends",
           "Fail instead of skipping stage 2 tests when PostgreSQL or Redis is unavailable",
           flag=True, default=False),
    Option("--minigram-seed-users", "minigram_seed_users",
           "Users to seed into each Minigram server (default: 200)", default="200",
           metavar="N"),
    Option("--minigram-seed-photos", "minigram_seed_photos",
           "Photos to seed into each Minigram server (default: 1000)", default="1000",
           metavar="N"),
)


def add_harness_options(parser: pytest.Parser) -> None:
    add_options(parser, OPTIONS, "minigram-harness",
                "Minigram, the reference target of pytest-minigram")


def _opt(name: str) -> Option:
    return next(o for o in OPTIONS if o.name == name)


def parse_stages(value: str) -> tuple[str, ...]:
    """'1,2' / '1 1.5' / 'all' -> ('1', '2'); raises ValueError on anything else."""
    parts = [p for p in re.split(r"[,\s]+", str(value).strip()) if p]
    if not parts:
        raise ValueError("no stage given")
    out: list[str] = []
    for part in parts:
        norm = part.lower().removeprefix("stage")
        if norm == "all":
            out.extend(STAGES)
        elif norm in STAGES:
            out.append(norm)
        elif norm == "1.0" or norm == "2.0":
            out.append(norm[0])
        else:
            raise ValueError(part)
    return tuple(s for s in STAGES if s in out)


def _checkout(opt: Option, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser().resolve()
    if not (path / "minigram" / "__init__.py").is_file():
        raise usage_error(opt, value, "expected a checkout of Minigram: a directory with "
                          "minigram/__init__.py, such as a git worktree of main")
    return path


def _url(opt: Option, value: Any, schemes: tuple[str, ...]) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme.split("+", 1)[0] not in schemes:
        raise usage_error(opt, value, f"expected a URL such as {schemes[0]}://host:port/...")
    return text


@dataclass(frozen=True)
class HarnessSettings:
    """The effective Minigram harness settings for one session."""

    stages: tuple[str, ...] = ("1",)
    pg_url: str | None = None
    redis_url: str | None = None
    require_backends: bool = False
    duet: Path | None = None
    seed_users: int = 200
    seed_photos: int = 1000
    bind: str = "127.0.0.1"


def resolve(config: pytest.Config) -> HarnessSettings:
    raw = {opt.name: raw_value(config, opt) for opt in OPTIONS}
    stage_opt = _opt("--stage")
    try:
        stages = parse_stages(raw["--stage"])
    except ValueError:
        raise usage_error(stage_opt, raw["--stage"],
                          "valid stages are 1, 1.5, 2 and all (several as 1,2)") from None
    return HarnessSettings(
        stages=stages,
        pg_url=_url(_opt("--minigram-pg-url"), raw["--minigram-pg-url"],
                    ("postgresql", "postgres")),
        redis_url=_url(_opt("--minigram-redis-url"), raw["--minigram-redis-url"],
                       ("redis", "rediss", "unix")),
        require_backends=bool(raw["--minigram-require-backends"]),
        duet=_checkout(_opt("--minigram-duet"), raw["--minigram-duet"]),
        seed_users=parse_count(_opt("--minigram-seed-users"), raw["--minigram-seed-users"]),
        seed_photos=parse_count(_opt("--minigram-seed-photos"), raw["--minigram-seed-photos"]),
        bind=_host(_opt("--minigram-bind"), raw["--minigram-bind"]),
    )


def _host(opt: Option, value: Any) -> str:
    import ipaddress

    text = str(value).strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise usage_error(opt, value, "expected an IP address such as 127.0.0.2") from None
    return text
