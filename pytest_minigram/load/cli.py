"""``python -m pytest_minigram load TARGET -j JOURNEY ...``: one load run without pytest.

``JOURNEY`` is a registered name (``--list``) or an import path ``package.module:attr`` (a
Journey, a Journey subclass or an ``async def`` taking the virtual user). Everything printed
that came from the target (error examples with response bodies, action and Server-Timing
names) has its control characters escaped first: a body cannot move the cursor, retitle the
terminal or forge a line of the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from pytest_minigram.load.client import InsecureTargetWarning
from pytest_minigram.load.recorder import Progress
from pytest_minigram.load.result import ActionStats, Result, Timing
from pytest_minigram.load.runner import run
from pytest_minigram.load.workloads import Closed, Open, RampingRate, parse_duration
from pytest_minigram.metrics import ms_number as _ms

__all__ = ["escape_controls", "format_summary", "main"]

# C0 controls, DEL, C1 controls, and the bidirectional overrides that reorder what is shown
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
_ESCAPES.update({c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F),
                                            *range(0x2066, 0x206A))})


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\r``...)."""
    return text.translate(_ESCAPES)


def _think(text: str) -> float | tuple[float, float]:
    low, sep, high = text.partition("-")
    return (parse_duration(low), parse_duration(high)) if sep else parse_duration(text)


def _stages(text: str) -> list[tuple[float, float]]:
    out = []
    for part in text.split(","):
        rate, sep, length = part.partition(":")
        if not sep:
            raise ValueError(f"invalid stage {part!r}; use RATE:DURATION, e.g. 10:30s,100:1m")
        out.append((float(rate), parse_duration(length)))
    return out


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid {what} {item!r}; use KEY=VALUE")
        out[key] = value
    return out


def _param_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_minigram load",
        description="Run a journey against an HTTP/1.1 target and print the statistics",
    )
    p.add_argument("target", help="Base URL, e.g. http://127.0.0.1:8000 or https://...")
    p.add_argument("-j", "--journey", default="realistic",
                   help="Journey: a name (see --list) or package.module:attr")
    p.add_argument("--list", action="store_true", help="List the available journeys and exit")
    model = p.add_mutually_exclusive_group()
    model.add_argument("-u", "--users", type=int, help="Closed model: concurrent users")
    model.add_argument("-r", "--rate", type=float, help="Open model: iterations started per second")
    model.add_argument("--stages", type=_stages, help="Ramping rate: RATE:DURATION,... ")
    p.add_argument("-d", "--duration", type=parse_duration, default=None,
                   help="Run time, e.g. 30s or 2m (default 10s)")
    p.add_argument("--ramp-up", type=parse_duration, default=0.0, help="Closed model ramp-up")
    p.add_argument("--iterations", type=int, help="Closed model: iterations per user")
    p.add_argument("--think", type=_think, help="Think time between iterations: 1s or 0.5-1.5")
    p.add_argument("--max-users", type=int, default=1000, help="Open models: user pool size")
    p.add_argument("--timeout", type=parse_duration, default=10.0, help="Per-request timeout")
    p.add_argument("--ca-bundle", type=Path, metavar="PEM",
                   help="https: verify the target against these CAs instead of the system's")
    p.add_argument("--insecure", action="store_true",
                   help="https: do not verify the certificate (self-signed staging certs)")
    p.add_argument("--apdex-t", type=parse_duration, default=0.5, help="Apdex threshold T")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="Journey parameter (JSON values allowed), e.g. seed_users=1000")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="Label stored in the result")
    p.add_argument("-o", "--json", type=Path, help="Write the result JSON to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="No live progress line")
    return p


def _row(name: str, s: ActionStats) -> str:
    name = escape_controls(name)
    return (f"{name[:24]:24} {s.count:8d} {s.error_rate * 100:6.2f}% {s.throughput:8.1f} "
            f"{_ms(s.p50):>8} {_ms(s.p95):>8} {_ms(s.p99):>8} {_ms(s.max):>8}")


def _timing(what: str, t: Timing) -> str:
    return (f"{what}: {t.count}, mean {_ms(t.mean)} ms, p95 {_ms(t.percentile(95))} ms, "
            f"max {_ms(t.percentile(100))} ms (not in the request latencies)")


def format_summary(result: Result) -> str:
    lines = [f"{'action':24} {'count':>8} {'errors':>7} {'req/s':>8} {'p50 ms':>8} "
             f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    lines += [_row(name, stats) for name, stats in sorted(result.actions.items())]
    lines.append(_row("TOTAL", result.total))
    lines.append(f"apdex {result.apdex_label}   iterations {result.iterations}   "
                 f"dropped {result.dropped_iterations}   duration {result.duration:.1f}s")
    if result.total.uncorrected is not None and result.count:
        lines.append(f"uncorrected (from actual send) p99 "
                     f"{_ms(result.percentile(99, uncorrected=True))} ms")
    for kind, info in sorted(result.errors.items()):
        lines.append(escape_controls(f"error {kind}: {info['count']}  e.g. {info['example']}"))
    for action, stats in sorted(result.actions.items()):
        if stats.expected:
            parts = ", ".join(f"{status} x{n}" for status, n in sorted(stats.expected.items()))
            lines.append(escape_controls(f"expected {action}: {parts} (not errors)"))
    for action, comps in sorted(result.server_timing.items()):
        parts = ", ".join(f"{c} {v['total'] / v['count'] * 1000:.2f} ms"
                          for c, v in comps.items() if v["count"])
        lines.append(escape_controls(f"server-timing {action}: {parts}"))
    for what, timing in (("connect", result.connect), ("TLS handshake", result.tls)):
        if timing.count:
            lines.append(_timing(what, timing))
    gen = result.generator
    if result.saturated:
        lines.append(f"WARNING: the load generator was saturated (CPU max {gen['cpu_max']:.0%}, "
                     f"{gen['saturated_fraction']:.0%} of the run); latency figures are not "
                     "trustworthy")
    if result.interrupted:
        lines.append("interrupted: partial result")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pytest_minigram.load.registry import available_journeys, resolve_journey

    if args.list:
        print("\n".join(available_journeys()))
        return 0
    if args.insecure and args.ca_bundle is not None:
        parser.error("--insecure and --ca-bundle contradict each other")
    try:
        journey = resolve_journey(args.journey)
        params = {k: _param_value(v) for k, v in _pairs(args.param, "param").items()}
        labels = _pairs(args.label, "label")
        duration = args.duration
        if args.stages:
            workload: Closed | Open | RampingRate = RampingRate(args.stages,
                                                                max_users=args.max_users)
        elif args.rate is not None:
            workload = Open(rate=args.rate, duration=duration or 10.0, max_users=args.max_users)
        else:
            if duration is None and args.iterations is None:
                duration = 10.0
            workload = Closed(users=args.users or 1, duration=duration, ramp_up=args.ramp_up,
                              iterations=args.iterations, think_time=args.think)
    except (KeyError, ValueError, TypeError) as exc:
        parser.error(str(exc.args[0] if exc.args else exc))
    if args.insecure and args.target.startswith("https:"):
        print("WARNING: --insecure: the certificate of the target is not verified",
              file=sys.stderr)

    def progress(p: Progress) -> None:
        p95 = "-" if p.p95 is None else f"{p.p95 * 1000:.0f} ms"
        print(f"\r{p.elapsed:6.0f}s  users {p.users:5d}  {p.rps:7.0f} req/s  errors {p.errors}"
              f"  p95 {p95}   ", end="", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureTargetWarning)  # said once above
        try:
            result = run(workload, journey, args.target, timeout=args.timeout,
                         apdex_t=args.apdex_t, labels=labels, params=params,
                         on_progress=None if args.quiet else progress,
                         verify=not args.insecure, ca_bundle=args.ca_bundle)
        except (ValueError, OSError) as exc:  # a target refused, an unreadable CA bundle
            parser.error(f"{type(exc).__name__}: {exc}")
    if not args.quiet:
        print(file=sys.stderr)
    print(format_summary(result))
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=1))
        print(f"result written to {args.json}")
    return 0
