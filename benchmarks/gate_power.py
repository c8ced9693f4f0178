"""Does the regression gate work on this machine? Count false alarms and detections.

    .venv/bin/python benchmarks/gate_power.py [--quick] [--runs 10] [--rounds 5]
        [--duration 3] [--fail p50:+10%] [--slowdown 25%] [--stage 1] [--neighbour DUTY]
        [--keep DIR]

Every gate run is what a pull request's CI job does with ``--minigram-duet``: one pytest
session of its own,

    pytest benchmarks/gate/test_feed_gate.py --stage 1 --minigram-duet=. --minigram-rounds 5
        --minigram-duration 3s --minigram-compare-fail p50:+10%

which seeds two fresh Minigram databases, starts ``--rounds`` fresh server processes from
this checkout (the code under test) and as many from the baseline checkout, runs the feed
journey (one closed-model user) in rounds against the two in turn (baseline, head, head,
baseline, ...), compares the pair and fails the test on a regression. Here both checkouts
are this one, so the code is the same on both sides:

1. ``unchanged``: ``--runs`` gate runs as they are; a failure is a false alarm;
2. ``slowdown``: ``--runs`` gate runs with ``MINIGRAM_FAULTS=feed:delay=25%`` (the feed
   handler's time plus 25 %), which reaches the servers of the code under test only, never
   the baseline's; a failure is a detection.

The verdict is pytest's exit code (1: the test failed on the regression); the line per gate
run also shows what the comparison said (read back from the results file). Exit status 0
when the target (at most 1 false alarm in 10, at least 9 detections in 10, every gate run
under 60 s) is met, 1 otherwise. ``--keep DIR`` keeps every results file.
``--neighbour 0.3`` runs it all next to a noisy neighbour: one CPU burner per CPU, busy in
random bursts for 30 % of the time, like other jobs on a shared CI machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEST = "benchmarks/gate/test_feed_gate.py"


@dataclass
class GateRun:
    condition: str
    index: int
    seconds: float  # the whole pytest session: seed, start servers, measure, compare
    pressure: float | None  # share of the run in which some task waited for a CPU
    regression: bool
    change: dict[str, Any] | None


def cpu_pressure_total() -> float | None:
    """Seconds in which some runnable task waited for a CPU (Linux PSI), None elsewhere."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(kv.split("=") for kv in line.split()[1:])
    return int(fields["total"]) / 1e6


def session(args: argparse.Namespace, results: Path, *,
            faults: str = "") -> tuple[int, float, float | None, str]:
    """One gate run, a pytest session; returns (exit code, seconds, cpu pressure, output)."""
    argv = [sys.executable, "-m", "pytest", TEST, "-p", "no:cacheprovider", "-q",
            "--stage", args.stage, f"--minigram-duet={ROOT}",
            "--minigram-rounds", str(args.rounds),
            "--minigram-duration", f"{args.duration:g}s",
            "--minigram-seed-users", str(args.seed_users),
            "--minigram-seed-photos", str(args.seed_photos),
            "--minigram-results", str(results), "--minigram-compare-fail", args.fail]
    env = {**os.environ, "MINIGRAM_FAULTS": faults}
    psi0, t0 = cpu_pressure_total(), time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    seconds = time.perf_counter() - t0
    psi1 = cpu_pressure_total()
    pressure = None if psi0 is None or psi1 is None else (psi1 - psi0) / seconds
    return proc.returncode, seconds, pressure, proc.stdout + proc.stderr


def burn(duty: float, seed: int) -> None:
    """A noisy neighbour: CPU bursts of random length (mean 2 s), busy ``duty`` of the time."""
    rng = random.Random(seed)
    while True:
        busy = rng.expovariate(1 / 2.0)
        end = time.perf_counter() + busy
        while time.perf_counter() < end:
            pass
        time.sleep(busy * (1 - duty) / duty)


def start_neighbours(duty: float) -> list[multiprocessing.Process]:
    """One bursty CPU burner per CPU, as other jobs on a shared CI machine."""
    procs = [multiprocessing.Process(target=burn, args=(duty, i), daemon=True)
             for i in range(os.cpu_count() or 1)]
    for proc in procs:
        proc.start()
    return procs


def gated_change(results: Path, metric: str) -> dict[str, Any] | None:
    run = json.loads(results.read_text())
    for change in run["tests"][0].get("comparison") or []:
        if change["metric"] == metric:
            return dict(change)
    return None


def fmt(v: float | None, spec: str) -> str:
    return "   n/a" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 3 gate runs per condition")
    parser.add_argument("--stage", default="1", choices=("1", "1.5", "2"),
                        help="Minigram stage to measure (default: 1, see docs/regression-gate.md)")
    parser.add_argument("--runs", type=int, default=10, help="Gate runs per condition")
    parser.add_argument("--rounds", type=int, default=5,
                        help="--minigram-rounds: rounds per side, each on its own server process")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="Seconds per round, 1 s ramp-up included")
    parser.add_argument("--fail", default="p50:+10%", help="The gate's tolerance expression")
    parser.add_argument("--slowdown", default="25%", help="Feed delay injected for detections")
    parser.add_argument("--seed-users", type=int, default=100)
    parser.add_argument("--seed-photos", type=int, default=1000)
    parser.add_argument("--neighbour", type=float, default=0.0, metavar="DUTY",
                        help="Run a noisy neighbour: one CPU burner per CPU, busy in random "
                             "bursts (mean 2 s) for this share of the time, e.g. 0.3")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Directory to keep the baseline and every gate run's results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 3
    metric = args.fail.split(":", 1)[0].strip()
    workdir = Path(tempfile.mkdtemp(prefix="gate_power-"))
    out = args.keep or workdir
    out.mkdir(parents=True, exist_ok=True)
    print(f"stage {args.stage}, {TEST}: feed journey, 1 user, {args.rounds} rounds of "
          f"{args.duration:g}s (1 s ramp-up each) a side, baseline and head in turn, each round "
          f"on a fresh server process; gate {args.fail}, slowdown feed:delay={args.slowdown}, "
          f"{args.runs} gate runs per condition"
          + (f"; noisy neighbour: {os.cpu_count()} CPU burners busy {args.neighbour:.0%} of "
             "the time in random bursts" if args.neighbour else ""), flush=True)
    if not 0 <= args.neighbour < 1:
        parser.error("--neighbour: a share of the time from 0 to below 1")
    neighbours = start_neighbours(args.neighbour) if args.neighbour else []
    gate_runs: list[GateRun] = []
    try:
        for condition, faults in (("unchanged", ""),
                                  ("slowdown", f"feed:delay={args.slowdown}")):
            for i in range(args.runs):
                results = out / f"{condition}-{i:02d}.json"
                code, seconds, pressure, output = session(args, results, faults=faults)
                if code not in (0, 1) or not results.exists():
                    print(f"[{condition} {i + 1}] session error (exit {code}):\n{output}",
                          file=sys.stderr)
                    return 2
                c = gated_change(results, metric)
                regression = code == 1
                if c is None or bool(c["regression"]) != regression:
                    print(f"[{condition} {i + 1}] exit code {code} disagrees with the "
                          f"comparison {c}:\n{output}", file=sys.stderr)
                    return 2
                gate_runs.append(GateRun(condition, i, seconds, pressure, regression, c))
                print(f"[{condition} {i + 1:2d}/{args.runs}] {seconds:5.1f}s  {metric} "
                      f"{c['baseline'] * 1000:6.2f} -> {c['current'] * 1000:6.2f} ms "
                      f"change {fmt(c['change'], '+7.1%')}  floor "
                      f"{fmt(c['floor_change'], '+7.1%')}  p={fmt(c['p_value'], '7.2g')}  "
                      f"rounds {c['rounds_baseline']}/{c['rounds_current']}  "
                      f"cpu pressure {fmt(pressure, '4.0%')}  "
                      f"{'REGRESSION' if regression else 'ok'}", flush=True)
    finally:
        for proc in neighbours:
            proc.terminate()
            proc.join()
        shutil.rmtree(workdir, ignore_errors=True)
    false_alarms = sum(g.regression for g in gate_runs if g.condition == "unchanged")
    detections = sum(g.regression for g in gate_runs if g.condition == "slowdown")
    slowest = max(g.seconds for g in gate_runs)
    mean = sum(g.seconds for g in gate_runs) / len(gate_runs)
    print(f"\nfalse alarms: {false_alarms}/{args.runs} unchanged runs")
    print(f"detections:   {detections}/{args.runs} runs with feed:delay={args.slowdown}")
    print(f"gate run time: mean {mean:.1f}s, max {slowest:.1f}s (the whole pytest session)")
    known = [g.pressure for g in gate_runs if g.pressure is not None]
    if known:
        print(f"cpu pressure (Linux PSI, share of time some task waited for a CPU): "
              f"mean {sum(known) / len(known):.0%}, min {min(known):.0%}, max {max(known):.0%}")
    ok = (false_alarms <= args.runs // 10 and detections >= args.runs - args.runs // 10
          and slowest < 60)
    print("target met" if ok else "target NOT met")
    if args.keep is not None:
        (args.keep / "summary.json").write_text(json.dumps({
            "command": sys.argv, "false_alarms": false_alarms, "detections": detections,
            "runs": args.runs, "max_seconds": slowest}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
