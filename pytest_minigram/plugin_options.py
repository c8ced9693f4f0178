"""The plugin's options: declared once, resolved as option, then ini key, then default."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.load import parse_duration

STAGES = ("1", "1.5", "2")
DEFAULT_REPORT = "reports/minigram-report.html"
DEFAULT_STORAGE = ".minigram"


@dataclass(frozen=True)
class Option:
    name: str  # "--minigram-users"
    ini: str  # "minigram_users"
    help: str
    default: Any = None
    flag: bool = False
    nargs: str | None = None
    const: Any = None
    env: str | None = None
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("--stage", "minigram_stage",
           "Minigram stage(s) to test: 1, 1.5, 2 or all; several as 1,2 (default: 1)",
           default="1", metavar="STAGES"),
    Option("--minigram-users", "minigram_users",
           "Scale every declared user count by this factor, e.g. 0.5 or 2 (default: 1)",
           default="1", metavar="FACTOR"),
    Option("--minigram-duration", "minigram_duration",
           "Scale every declared duration by a factor (0.5) or set it to a fixed time (10s)",
           default="1", metavar="FACTOR|TIME"),
    Option("--minigram-rounds", "minigram_rounds",
           "Run each perf test's load N times in a row, each round against its own server "
           "process (N per stage); the regression gate then takes the median of the "
           "rounds' floors and counts the spread between rounds as noise (default: 1)",
           default="1", metavar="N"),
    Option("--minigram-duet", "minigram_duet",
           "Measure a baseline side by side: also start Minigram from the checkout at PATH "
           "(e.g. a git worktree of main) and run each perf test's rounds against it and "
           "this checkout in turn; --minigram-compare-fail then gates on the pair",
           metavar="PATH"),
    Option("--minigram-rate", "minigram_rate",
           "Scale every declared arrival rate by this factor (default: 1)",
           default="1", metavar="FACTOR"),
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
    Option("--minigram-report", "minigram_report",
           f"Write the HTML report to PATH (default: {DEFAULT_REPORT})",
           nargs="?", const=DEFAULT_REPORT, metavar="PATH"),
    Option("--minigram-storage", "minigram_storage",
           "Where results are saved: a directory or an SQLAlchemy URL "
           f"(default: {DEFAULT_STORAGE})",
           default=DEFAULT_STORAGE, metavar="DIR|URL"),
    Option("--minigram-save", "minigram_save", "Save this run's results under NAME",
           metavar="NAME"),
    Option("--minigram-autosave", "minigram_autosave",
           "Save this run's results under an automatic numbered name", flag=True, default=False),
    Option("--minigram-compare", "minigram_compare",
           "Compare against a saved run: NAME, number, path or latest (default: latest)",
           nargs="?", const="latest", metavar="NAME"),
    Option("--minigram-compare-fail", "minigram_compare_fail",
           "Fail a perf test whose change is significant and beyond EXPR, e.g. p95:+10%,"
           "throughput:-10%", metavar="EXPR"),
    Option("--minigram-results", "minigram_results",
           "Write this run's results file (versioned JSON, docs/results-file.md) to PATH",
           metavar="PATH"),
    Option("--minigram-benchmark-json", "minigram_benchmark_json",
           "Write the perf results as pytest-benchmark JSON to PATH", metavar="PATH"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("minigram", "performance testing with pytest-minigram")
    for opt in OPTIONS:
        dest = opt.ini
        help_text = opt.help.replace("%", "%%")  # argparse %-formats option help
        if opt.flag:
            group.addoption(opt.name, action="store_true", default=None, dest=dest,
                            help=help_text)
            parser.addini(opt.ini, opt.help, type="bool", default=bool(opt.default))
        else:
            kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text,
                                      "metavar": opt.metavar}
            if opt.nargs:
                kwargs.update(nargs=opt.nargs, const=opt.const)
            group.addoption(opt.name, **kwargs)
            parser.addini(opt.ini, opt.help, type="string", default=opt.default)


def _raw(config: pytest.Config, opt: Option) -> Any:
    value = config.getoption(opt.ini)
    if value is not None:
        return value
    if opt.env and os.environ.get(opt.env):
        return os.environ[opt.env]
    ini = config.getini(opt.ini)
    if opt.flag:
        return bool(ini)
    return ini if ini not in ("", None) else opt.default


def _usage(opt: Option, value: Any, expected: str) -> pytest.UsageError:
    return pytest.UsageError(f"{opt.name} (ini: {opt.ini}): invalid value {value!r}; {expected}")


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


def _factor(opt: Option, value: Any) -> float:
    text = str(value).strip().lower().removesuffix("x")
    try:
        factor = float(text)
    except ValueError:
        raise _usage(opt, value, "expected a positive factor such as 0.5 or 2") from None
    if not factor > 0:
        raise _usage(opt, value, "expected a positive factor such as 0.5 or 2")
    return factor


def _count(opt: Option, value: Any) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise _usage(opt, value, "expected a whole number >= 0") from None
    if n < 0:
        raise _usage(opt, value, "expected a whole number >= 0")
    return n


MAX_ROUNDS = 16


def parse_rounds(opt: Option, value: Any) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_ROUNDS:
        raise _usage(opt, value, f"expected a whole number of rounds from 1 to {MAX_ROUNDS}")
    return n


def _checkout(opt: Option, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser().resolve()
    if not (path / "minigram" / "__init__.py").is_file():
        raise _usage(opt, value, "expected a checkout of Minigram: a directory with "
                     "minigram/__init__.py, such as a git worktree of main")
    return path


def _url(opt: Option, value: Any, schemes: tuple[str, ...]) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    if scheme.split("+", 1)[0] not in schemes:
        raise _usage(opt, value, f"expected a URL such as {schemes[0]}://host:port/...")
    return text


@dataclass(frozen=True)
class Settings:
    """The effective plugin settings for one session."""

    stages: tuple[str, ...] = ("1",)
    users_factor: float = 1.0
    duration_factor: float = 1.0
    fixed_duration: float | None = None
    rate_factor: float = 1.0
    pg_url: str | None = None
    redis_url: str | None = None
    require_backends: bool = False
    rounds: int = 1
    duet: Path | None = None
    seed_users: int = 200
    seed_photos: int = 1000
    report: Path | None = None
    storage: str = DEFAULT_STORAGE
    save: str | None = None
    autosave: bool = False
    compare: str | None = None
    compare_fail: str | None = None
    benchmark_json: Path | None = None
    results: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve(config: pytest.Config) -> Settings:
    """Read every option (option > env > ini > default), validating each; UsageError names it."""
    raw = {opt.name: _raw(config, opt) for opt in OPTIONS}

    stage_opt = _opt("--stage")
    try:
        stages = parse_stages(raw["--stage"])
    except ValueError:
        raise _usage(stage_opt, raw["--stage"],
                     "valid stages are 1, 1.5, 2 and all (several as 1,2)") from None

    dur_opt = _opt("--minigram-duration")
    dur_raw = str(raw["--minigram-duration"]).strip()
    fixed: float | None = None
    duration_factor = 1.0
    if re.fullmatch(r"[0-9.]+\s*[a-z]+", dur_raw.lower()) and not dur_raw.lower().endswith("x"):
        try:
            fixed = parse_duration(dur_raw)
        except ValueError:
            raise _usage(dur_opt, dur_raw, "expected a factor such as 0.5 or a time such as "
                         "10s, 500ms or 2m") from None
        if fixed <= 0:
            raise _usage(dur_opt, dur_raw, "expected a positive time")
    else:
        try:
            duration_factor = _factor(dur_opt, dur_raw)
        except pytest.UsageError:
            raise _usage(dur_opt, dur_raw, "expected a factor such as 0.5 or a time such as "
                         "10s, 500ms or 2m") from None

    report = raw["--minigram-report"]
    bench = raw["--minigram-benchmark-json"]
    return Settings(
        stages=stages,
        users_factor=_factor(_opt("--minigram-users"), raw["--minigram-users"]),
        duration_factor=duration_factor,
        fixed_duration=fixed,
        rate_factor=_factor(_opt("--minigram-rate"), raw["--minigram-rate"]),
        pg_url=_url(_opt("--minigram-pg-url"), raw["--minigram-pg-url"],
                    ("postgresql", "postgres")),
        redis_url=_url(_opt("--minigram-redis-url"), raw["--minigram-redis-url"],
                       ("redis", "rediss", "unix")),
        require_backends=bool(raw["--minigram-require-backends"]),
        rounds=parse_rounds(_opt("--minigram-rounds"), raw["--minigram-rounds"]),
        duet=_checkout(_opt("--minigram-duet"), raw["--minigram-duet"]),
        seed_users=_count(_opt("--minigram-seed-users"), raw["--minigram-seed-users"]),
        seed_photos=_count(_opt("--minigram-seed-photos"), raw["--minigram-seed-photos"]),
        report=Path(report) if report else None,
        storage=str(raw["--minigram-storage"] or DEFAULT_STORAGE),
        save=raw["--minigram-save"] or None,
        autosave=bool(raw["--minigram-autosave"]),
        compare=raw["--minigram-compare"] or None,
        compare_fail=raw["--minigram-compare-fail"] or None,
        benchmark_json=Path(bench) if bench else None,
        results=Path(raw["--minigram-results"]) if raw["--minigram-results"] else None,
    )
