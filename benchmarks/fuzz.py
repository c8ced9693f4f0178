"""A long schemathesis run against Minigram on stages 1 and 2, for the README's figures.

    .venv/bin/python benchmarks/fuzz.py [--examples 200] [--seeds 1 2 3] [--stage 1 --stage 2]

Runs tests/unit/test_app_fuzz.py against a real ``minigram serve`` (two workers on stage 2;
every operation of the generated OpenAPI schema, with schema-valid and schema-violating data,
with a bearer token and without) with
``MINIGRAM_FUZZ_EXAMPLES`` examples per operation and mode, once per seed, each in its own
pytest process. Every run prints one ``fuzz-figures:`` JSON line; this script sums them and
prints the cases run, the 5xx responses and the schema violations per stage. Exit status 1 if
any run failed (a 5xx or a violation), with the tail of its output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/unit/test_app_fuzz.py::test_fuzz_finds_no_server_errors_and_no_schema_violations"
MARK = "fuzz-figures: "


def run_once(stages: list[str], examples: int, seed: int) -> tuple[list[dict[str, object]], int,
                                                                   str]:
    argv = [
        sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
        *(f"{TEST}[{stage}]" for stage in stages),
    ]
    env = {**os.environ, "MINIGRAM_FUZZ_EXAMPLES": str(examples),
           "MINIGRAM_FUZZ_SEED": str(seed)}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=7200)
    figures = [
        json.loads(line[line.index(MARK) + len(MARK):])
        for line in done.stdout.splitlines()
        if MARK in line
    ]
    return figures, done.returncode, done.stdout[-4000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200,
                        help="Examples per operation, mode and authentication")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="Hypothesis seeds, one pytest run each")
    parser.add_argument("--stage", action="append", choices=["1", "2"],
                        help="Stage to fuzz (repeatable; default both)")
    args = parser.parse_args(argv)
    stages = args.stage or ["1", "2"]
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    failed = False
    started = time.monotonic()
    for seed in args.seeds:
        figures, code, tail = run_once(stages, args.examples, seed)
        for fig in figures:
            stage = str(fig["stage"])
            for key in ("cases", "server_errors", "violations"):
                totals[stage][key] += int(fig[key])  # type: ignore[call-overload]
            totals[stage]["seconds"] += float(fig["seconds"])  # type: ignore[arg-type]
            statuses[stage].update({str(k): int(v) for k, v in fig["statuses"].items()})  # type: ignore[union-attr]
            print(f"seed {seed} stage {stage}: {fig['cases']} cases, "
                  f"{fig['server_errors']} 5xx, {fig['violations']} violations, "
                  f"{fig['seconds']} s", flush=True)
        if code != 0:
            failed = True
            print(f"seed {seed}: pytest exited {code}\n{tail}", file=sys.stderr)
    print(f"\nfuzz: {args.examples} examples per operation/mode, seeds {args.seeds}, "
          f"{time.monotonic() - started:.0f} s")
    for stage in stages:
        t = totals[stage]
        print(f"stage {stage}: cases run {t['cases']}, 5xx found {t['server_errors']}, "
              f"schema violations {t['violations']}, "
              f"statuses {dict(sorted(statuses[stage].items()))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
