"""The generic plugin's options: declared once, resolved as option, env, ini key, default.

A harness declares its own options with the same `Option`, `add_options` and `raw_value`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.load import parse_duration

DEFAULT_REPORT = "reports/minigram-report.html"
DEFAULT_STORAGE = ".minigram"
DEFAULT_LISTEN = "127.0.0.1:0"


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
    Option("--minigram-rate", "minigram_rate",
           "Scale every declared arrival rate by this factor (default: 1)",
           default="1", metavar="FACTOR"),
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
    Option("--minigram-compare-history", "minigram_compare_history",
           "Gate on the last N runs saved under the --minigram-compare name, pooled: the spread "
           "between them counts as noise, as the spread between rounds does (default: 1)",
           default="1", metavar="N"),
    Option("--minigram-compare-fail", "minigram_compare_fail",
           "Fail a perf test whose change is significant and beyond EXPR, e.g. p95:+10%,"
           "throughput:-10%", metavar="EXPR"),
    Option("--minigram-compare-warn", "minigram_compare_warn",
           "Report a gated metric that the comparison cannot judge (too few per-second "
           "windows, or more noise than its tolerance) as a warning instead of failing",
           flag=True, default=False),
    Option("--minigram-coordinator", "minigram_coordinator",
           "Address the xdist controller's coordinator listens on, HOST or HOST:PORT "
           "(default: 127.0.0.1, a random port); one the workers reach with --tx ssh=...",
           default="127.0.0.1", metavar="HOST[:PORT]"),
    Option("--minigram-advertise", "minigram_advertise",
           "Address the xdist workers use to reach the coordinator, when it is not the one "
           "it listens on (for example when it listens on 0.0.0.0)", metavar="HOST"),
    Option("--minigram-quiet", "minigram_quiet",
           "No live line in the terminal while a load runs (-q silences it too)", flag=True,
           default=False),
    Option("--minigram-live", "minigram_live",
           "Serve a live page of the running loads, with a button to stop one, on HOST:PORT "
           f"(default: {DEFAULT_LISTEN}, port 0 = a free port, printed in the header)",
           nargs="?", const=DEFAULT_LISTEN, metavar="HOST:PORT"),
    Option("--minigram-prometheus", "minigram_prometheus",
           "Serve Prometheus metrics of the running loads (requests, errors, latency, users, "
           f"dropped arrivals, generator CPU) on HOST:PORT (default: {DEFAULT_LISTEN})",
           nargs="?", const=DEFAULT_LISTEN, metavar="HOST:PORT"),
    Option("--minigram-results", "minigram_results",
           "Write this run's results file (versioned JSON, docs/results-file.md) to PATH",
           metavar="PATH"),
    Option("--minigram-benchmark-json", "minigram_benchmark_json",
           "Write the perf results as pytest-benchmark JSON to PATH", metavar="PATH"),
)


def add_options(parser: pytest.Parser, options: tuple[Option, ...] = OPTIONS,
                group: str = "minigram",
                description: str = "performance testing with pytest-minigram") -> None:
    """Declare options with their ini twins; a harness passes its own ``options``."""
    grp = parser.getgroup(group, description)
    for opt in options:
        dest = opt.ini
        help_text = opt.help.replace("%", "%%")  # argparse %-formats option help
        if opt.flag:
            grp.addoption(opt.name, action="store_true", default=None, dest=dest,
                          help=help_text)
            parser.addini(opt.ini, opt.help, type="bool", default=bool(opt.default))
        else:
            kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text,
                                      "metavar": opt.metavar}
            if opt.nargs:
                kwargs.update(nargs=opt.nargs, const=opt.const)
            grp.addoption(opt.name, **kwargs)
            parser.addini(opt.ini, opt.help, type="string", default=opt.default)


def raw_value(config: pytest.Config, opt: Option) -> Any:
    """The option's value, else its environment variable, else its ini key, else the default."""
    value = config.getoption(opt.ini)
    if value is not None:
        return value
    if opt.env and os.environ.get(opt.env):
        return os.environ[opt.env]
    ini = config.getini(opt.ini)
    if opt.flag:
        return bool(ini)
    return ini if ini not in ("", None) else opt.default


def usage_error(opt: Option, value: Any, expected: str) -> pytest.UsageError:
    return pytest.UsageError(f"{opt.name} (ini: {opt.ini}): invalid value {value!r}; {expected}")


def _opt(name: str) -> Option:
    return next(o for o in OPTIONS if o.name == name)


def parse_factor(opt: Option, value: Any) -> float:
    text = str(value).strip().lower().removesuffix("x")
    try:
        factor = float(text)
    except ValueError:
        raise usage_error(opt, value, "expected a positive factor such as 0.5 or 2") from None
    if not factor > 0:
        raise usage_error(opt, value, "expected a positive factor such as 0.5 or 2")
    return factor


def parse_count(opt: Option, value: Any) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise usage_error(opt, value, "expected a whole number >= 0") from None
    if n < 0:
        raise usage_error(opt, value, "expected a whole number >= 0")
    return n


MAX_ROUNDS = 16


def parse_rounds(opt: Option, value: Any) -> int:
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_ROUNDS:
        raise usage_error(opt, value,
                          f"expected a whole number of rounds from 1 to {MAX_ROUNDS}")
    return n


@dataclass(frozen=True)
class Settings:
    """The effective settings of the generic plugin for one session."""

    users_factor: float = 1.0
    duration_factor: float = 1.0
    fixed_duration: float | None = None
    rate_factor: float = 1.0
    rounds: int = 1
    report: Path | None = None
    storage: str = DEFAULT_STORAGE
    save: str | None = None
    autosave: bool = False
    compare: str | None = None
    compare_fail: str | None = None
    compare_warn: bool = False
    compare_history: int = 1
    benchmark_json: Path | None = None
    results: Path | None = None
    coordinator: tuple[str, int] = ("127.0.0.1", 0)
    advertise: str | None = None
    quiet: bool = False
    live: tuple[str, int] | None = None  # where the live page listens
    prometheus: tuple[str, int] | None = None  # where the Prometheus endpoint listens


def _duration(raw: Any) -> tuple[float, float | None]:
    """(factor, fixed time): ``0.5`` scales every duration, ``10s`` fixes it."""
    opt = _opt("--minigram-duration")
    text = str(raw).strip()
    expected = "expected a factor such as 0.5 or a time such as 10s, 500ms or 2m"
    if re.fullmatch(r"[0-9.]+\s*[a-z]+", text.lower()) and not text.lower().endswith("x"):
        try:
            fixed = parse_duration(text)
        except ValueError:
            raise usage_error(opt, text, expected) from None
        if fixed <= 0:
            raise usage_error(opt, text, "expected a positive time")
        return 1.0, fixed
    try:
        return parse_factor(opt, text), None
    except pytest.UsageError:
        raise usage_error(opt, text, expected) from None


def resolve(config: pytest.Config) -> Settings:
    """Read every option (option > env > ini > default), validating each; UsageError names it."""
    raw = {opt.name: raw_value(config, opt) for opt in OPTIONS}
    duration_factor, fixed = _duration(raw["--minigram-duration"])
    report = raw["--minigram-report"]
    bench = raw["--minigram-benchmark-json"]
    return Settings(
        users_factor=parse_factor(_opt("--minigram-users"), raw["--minigram-users"]),
        duration_factor=duration_factor,
        fixed_duration=fixed,
        rate_factor=parse_factor(_opt("--minigram-rate"), raw["--minigram-rate"]),
        rounds=parse_rounds(_opt("--minigram-rounds"), raw["--minigram-rounds"]),
        report=Path(report) if report else None,
        storage=str(raw["--minigram-storage"] or DEFAULT_STORAGE),
        save=raw["--minigram-save"] or None,
        autosave=bool(raw["--minigram-autosave"]),
        compare=raw["--minigram-compare"] or None,
        compare_fail=raw["--minigram-compare-fail"] or None,
        compare_warn=bool(raw["--minigram-compare-warn"]),
        compare_history=_history(_opt("--minigram-compare-history"),
                                 raw["--minigram-compare-history"]),
        benchmark_json=Path(bench) if bench else None,
        results=Path(raw["--minigram-results"]) if raw["--minigram-results"] else None,
        coordinator=_address(_opt("--minigram-coordinator"), raw["--minigram-coordinator"]),
        advertise=str(raw["--minigram-advertise"]) if raw["--minigram-advertise"] else None,
        quiet=bool(raw["--minigram-quiet"]),
        live=_listen(_opt("--minigram-live"), raw["--minigram-live"]),
        prometheus=_listen(_opt("--minigram-prometheus"), raw["--minigram-prometheus"]),
    )


def _history(opt: Option, value: Any) -> int:
    n = parse_count(opt, value)
    if not 1 <= n <= 100:
        raise usage_error(opt, value, "expected a number of saved runs from 1 to 100")
    return n


def _host_port(text: str, *, allow_localhost: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``HOST`` (port 0) -> (host, port); ValueError if it is not that."""
    import ipaddress

    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "0")
    if not (allow_localhost and host == "localhost"):
        ipaddress.ip_address(host)
    number = int(port or "0")
    if not 0 <= number < 65536:
        raise ValueError(port)
    return host, number


def _address(opt: Option, value: Any) -> tuple[str, int]:
    try:
        return _host_port(str(value).strip())
    except ValueError:
        raise usage_error(opt, value, "expected HOST or HOST:PORT with an IP address, such "
                          "as 127.0.0.2 or 0.0.0.0:7777") from None


def _listen(opt: Option, value: Any) -> tuple[str, int] | None:
    """``HOST:PORT``, ``HOST`` or ``PORT`` (on 127.0.0.1); None when the option is not given."""
    if value in (None, "", False):
        return None
    text = str(value).strip()
    if text.isdigit() or text.startswith(":"):
        text = f"127.0.0.1:{text.lstrip(':')}"
    try:
        return _host_port(text, allow_localhost=True)
    except ValueError:
        raise usage_error(opt, value, "expected HOST:PORT, HOST or PORT with an IP address "
                          "and a port from 0 (a free one) to 65535, such as 127.0.0.1:8089"
                          ) from None
