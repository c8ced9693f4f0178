"""Error windows and recovery times of Minigram under faults and overload, for the README.

    .venv/bin/python benchmarks/faults.py [--repeat 3] [--only redis|postgres|worker|overload]
                                          [--pg-down SECONDS]

Runs the fault tests (tests/unit/test_app_faults.py: Redis stopped for 5 s, PostgreSQL
restarted, a worker killed, each on stage 2 under load, on throwaway backends) and the overload
test (tests/unit/test_app_overload.py: three times the measured breaking point) ``--repeat``
times, each in its own pytest process. Every test prints one ``fault-figures:`` JSON line;
this script collects them and prints, per fault and figure, the median and the range.
``--pg-down N`` adds runs of the PostgreSQL test that keep it down N seconds before starting
it again (a longer outage than a restart).
A failing test run is reported and makes the script exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = {
    "redis": "tests/unit/test_app_faults.py::test_redis_stopped_for_5s_requests_keep_succeeding"
    "_and_the_cache_comes_back",
    "postgres": "tests/unit/test_app_faults.py::test_postgres_restarted_in_flight_requests_get"
    "_503_and_the_pool_recovers",
    "worker": "tests/unit/test_app_faults.py::test_a_killed_worker_is_replaced_and_the_other"
    "_keeps_serving",
    "overload": "tests/unit/test_app_overload.py::test_three_times_the_breaking_point_is_shed"
    "_fast_and_recovers",
}
MARK = "fault-figures: "


def run_once(test_ids: list[str], pg_down: float = 0.0) -> tuple[list[dict[str, object]], int, str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *test_ids]
    env = {**os.environ, "MINIGRAM_FAULTS_PG_DOWN": str(pg_down)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    figures = [
        json.loads(line[line.index(MARK) + len(MARK):])
        for line in done.stdout.splitlines()
        if MARK in line
    ]
    return figures, done.returncode, done.stdout[-3000:]


def summarize(runs: list[dict[str, object]]) -> list[str]:
    by_fault: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for figures in runs:
        fault = str(figures["fault"])
        for key, value in figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                by_fault[fault][key].append(float(value))
            elif isinstance(value, dict):  # error counts by kind
                for kind, count in value.items():
                    by_fault[fault][f"{key}[{kind}]"].append(float(count))
    lines = []
    for fault, values in by_fault.items():
        lines.append(f"{fault}:")
        for key, numbers in values.items():
            median = statistics.median(numbers)
            spread = f" (range {min(numbers):g} .. {max(numbers):g})" if len(numbers) > 1 else ""
            lines.append(f"  {key:28s} {median:g}{spread}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each test")
    parser.add_argument("--only", choices=sorted(TESTS), action="append",
                        help="Run only this fault (repeatable)")
    parser.add_argument("--pg-down", type=float, default=0.0,
                        help="Also keep PostgreSQL down this many seconds in extra runs")
    args = parser.parse_args()
    chosen = [TESTS[name] for name in (args.only or list(TESTS))]
    collected: list[dict[str, object]] = []
    failures = 0
    started = time.monotonic()
    plan = [(chosen, 0.0)] * args.repeat
    if args.pg_down > 0:
        plan += [([TESTS["postgres"]], args.pg_down)] * args.repeat
    for i, (test_ids, pg_down) in enumerate(plan):
        figures, code, tail = run_once(test_ids, pg_down)
        collected += figures
        print(f"run {i + 1}/{len(plan)}: exit {code}, {len(figures)} figure line(s)", flush=True)
        if code != 0:
            failures += 1
            print(tail, file=sys.stderr)
    print(f"\n{len(plan)} run(s) in {time.monotonic() - started:.0f} s "
          "(times in seconds unless the name says otherwise)")
    print("\n".join(summarize(collected)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
