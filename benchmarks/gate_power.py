"""Does the regression gate work on this machine? Count false alarms and detections.

    .venv/bin/python benchmarks/gate_power.py [--quick] [--stage 1] [--users 1]
        [--duration 20] [--runs 10] [--fail p50:+10%] [--slowdown 25%] [--nice N]
        [--quiet-baseline PRESSURE] [--keep DIR]

Seeds a throw-away Minigram database, then for each condition starts Minigram on a free port
on 127.0.0.1 (``python -m minigram serve``, supervised by ``ServerProcess``), warms it up and
measures the ``feed`` journey under a closed workload with the load engine:

1. ``baseline``: one run, saved as the baseline results file;
2. ``unchanged``: ``--runs`` gate runs against a freshly started, unchanged server; a
   regression reported here is a false alarm;
3. ``slowdown``: ``--runs`` gate runs with ``MINIGRAM_FAULTS=feed:delay=25%`` (the feed
   handler's time plus 25 %); a regression reported here is a detection.

A gate run is one measured run plus ``compare_runs(baseline, run, parse_tolerances(FAIL))``
with the default :class:`~pytest_minigram.compare.GateConfig`: exactly what
``--minigram-compare-fail=FAIL`` does in the plugin. Prints a line per gate run (wall time,
the point change, the window shift, p-value, consistency, verdict) and both counts. Exit status
0 when the target (at most 1 false alarm in 10, at least 9 detections in 10, every gate run
under 60 s) is met, 1 otherwise. ``--keep DIR`` keeps every results file, so that the maths
can be re-run offline with ``python -m pytest_minigram compare``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_minigram.compare import (  # noqa: E402
    Change,
    GateConfig,
    compare_runs,
    parse_tolerances,
)
from pytest_minigram.environment import collect_environment  # noqa: E402
from pytest_minigram.journeys import get_journey  # noqa: E402
from pytest_minigram.load import Closed, run  # noqa: E402
from pytest_minigram.server import ServerProcess, free_port  # noqa: E402
from pytest_minigram.storage import new_run, save_run  # noqa: E402

TEST = "benchmarks/gate_power.py::feed"
HOST = "127.0.0.1"


@dataclass
class GateRun:
    condition: str
    index: int
    seconds: float  # measuring plus comparing
    pressure: float | None  # share of the run in which some task waited for a CPU
    regression: bool
    change: Change


class Minigram:
    """A seeded data directory, and one server process per condition."""

    def __init__(self, stage: str, workdir: Path, users: int, photos: int) -> None:
        self.stage = stage
        self.workdir = workdir
        self.env = {"MINIGRAM_STAGE": stage, "MINIGRAM_DATA_DIR": str(workdir / "data"),
                    "MINIGRAM_MEDIA_DIR": str(workdir / "data" / "media"), "MINIGRAM_FAULTS": ""}
        full = {**os.environ, **self.env}
        for args in (["db", "upgrade"],
                     ["seed", "--users", str(users), "--photos", str(photos), "--reset"]):
            subprocess.run([sys.executable, "-m", "minigram", *args], env=full, check=True,
                           capture_output=True, timeout=300, cwd=ROOT)

    def server(self, name: str, faults: str = "") -> ServerProcess:
        port = free_port(HOST)
        return ServerProcess(
            [sys.executable, "-m", "minigram", "serve", "--stage", self.stage,
             "--host", HOST, "--port", str(port)],
            log_path=self.workdir / f"server-{name}.log",
            env={**self.env, "MINIGRAM_FAULTS": faults},
            health_url=f"http://{HOST}:{port}/healthz", name=f"minigram-{name}", cwd=ROOT,
        )


def cpu_pressure_total() -> float | None:
    """Seconds in which some runnable task waited for a CPU (Linux PSI), None elsewhere."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(kv.split("=") for kv in line.split()[1:])
    return int(fields["total"]) / 1e6


def wait_for_quiet(max_pressure: float, timeout: float = 180.0) -> float | None:
    """Wait until the CPU pressure of the last 5 s is at most ``max_pressure``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        before = cpu_pressure_total()
        time.sleep(5)
        after = cpu_pressure_total()
        if before is None or after is None:
            return None
        pressure = (after - before) / 5
        if pressure <= max_pressure or time.monotonic() > deadline:
            return pressure


def measure(url: str, users: int, duration: float, seed_users: int) -> dict[str, Any]:
    workload = Closed(users=users, duration=duration, ramp_up=1.0)
    result = run(workload, get_journey("feed"), url, params={"seed_users": seed_users})
    return result.to_dict()


def as_run(result: dict[str, Any], environment: dict[str, Any], stage: str) -> dict[str, Any]:
    verdict = "passed" if result["total"]["errors"] == 0 else "failed"
    return new_run(environment, [{"test": TEST, "stage": stage, "result": result, "slo": [],
                                  "verdict": verdict}])


def fmt(v: float | None, spec: str) -> str:
    return "   n/a" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 3 gate runs per condition of 12 s each")
    parser.add_argument("--stage", default="1", choices=("1", "1.5", "2"),
                        help="Minigram stage to measure (default: 1, see docs/regression-gate.md)")
    parser.add_argument("--users", type=int, default=1, help="Closed-model virtual users")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="Seconds per measured run, 1 s ramp-up included")
    parser.add_argument("--runs", type=int, default=10, help="Gate runs per condition")
    parser.add_argument("--fail", default="p50:+10%", help="The gate's tolerance expression")
    parser.add_argument("--slowdown", default="25%", help="Feed delay injected for detections")
    parser.add_argument("--seed-users", type=int, default=100)
    parser.add_argument("--seed-photos", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="Seconds of unrecorded load after each server start")
    parser.add_argument("--quiet-baseline", type=float, default=None, metavar="PRESSURE",
                        help="Record the baseline only once the CPU pressure (PSI) of the last "
                             "5 s is at most this share, e.g. 0.3 (waits up to 3 minutes)")
    parser.add_argument("--nice", type=int, default=0,
                        help="Scheduling priority of this process and the servers it starts "
                             "(negative: higher; needs root or CAP_SYS_NICE)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Directory to keep the baseline and every gate run's results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration = 3, 12.0
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the servers inherit it
    tolerances = parse_tolerances(args.fail)
    gated = {t.metric for t in tolerances}
    config = GateConfig()
    workdir = Path(tempfile.mkdtemp(prefix="gate_power-"))
    keep = args.keep
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    print(f"stage {args.stage}, feed journey, Closed(users={args.users}, duration="
          f"{args.duration:g}s, ramp_up=1s), gate {args.fail}, slowdown feed:delay="
          f"{args.slowdown}, {args.runs} gate runs per condition, "
          f"nice {os.getpriority(os.PRIO_PROCESS, 0)}, {config}", flush=True)
    gate_runs: list[GateRun] = []
    try:
        app = Minigram(args.stage, workdir, args.seed_users, args.seed_photos)
        environment = collect_environment({"stage": args.stage, "benchmark": "gate_power"},
                                          cwd=ROOT)
        baseline: dict[str, Any] | None = None
        conditions = [("baseline", "", 1), ("unchanged", "", args.runs),
                      ("slowdown", f"feed:delay={args.slowdown}", args.runs)]
        for condition, faults, count in conditions:
            server = app.server(condition, faults)
            t0 = time.perf_counter()
            server.start(timeout=60)
            try:
                url = f"http://{HOST}:{server.port}"
                measure(url, args.users, args.warmup, args.seed_users)
                print(f"[{condition}] server on port {server.port} (faults: {faults or 'none'}),"
                      f" started and warmed up in {time.perf_counter() - t0:.1f}s", flush=True)
                for i in range(count):
                    if baseline is None and args.quiet_baseline is not None:
                        waited = time.perf_counter()
                        quiet = wait_for_quiet(args.quiet_baseline)
                        print(f"[baseline] waited {time.perf_counter() - waited:.0f}s for cpu "
                              f"pressure {fmt(quiet, '.0%')}", flush=True)
                    t1 = time.perf_counter()
                    psi0 = cpu_pressure_total()
                    server.check_alive()
                    current = as_run(measure(url, args.users, args.duration, args.seed_users),
                                     environment, args.stage)
                    if keep is not None:
                        save_run(current, keep / f"{condition}-{i:02d}.json")
                    psi1 = cpu_pressure_total()
                    pressure = (None if psi0 is None or psi1 is None
                                else (psi1 - psi0) / (time.perf_counter() - t1))
                    if baseline is None:
                        baseline = current
                        print(f"[baseline] recorded in {time.perf_counter() - t1:.1f}s, "
                              f"cpu pressure {fmt(pressure, '.0%')}", flush=True)
                        continue
                    report = compare_runs(baseline, current, tolerances, config=config)
                    comp = report.comparisons[0]
                    seconds = time.perf_counter() - t1
                    main_change = next(c for c in comp.changes if c.metric in gated)
                    gate_runs.append(GateRun(condition, i, seconds, pressure,
                                             bool(comp.regressions), main_change))
                    c = main_change
                    print(f"[{condition} {i + 1:2d}/{count}] {seconds:5.1f}s  {c.metric} "
                          f"{c.baseline * 1000:7.2f} -> {c.current * 1000:7.2f} ms "
                          f"change {fmt(c.change, '+7.1%')}  floor "
                          f"{fmt(c.window_shift, '+7.1%')}  p={fmt(c.p_value, '9.2g')}  "
                          f"consistency {fmt(c.consistency, '.2f')}  "
                          f"cpu pressure {fmt(pressure, '4.0%')}  "
                          f"{'REGRESSION' if comp.regressions else 'ok'}", flush=True)
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    false_alarms = sum(g.regression for g in gate_runs if g.condition == "unchanged")
    detections = sum(g.regression for g in gate_runs if g.condition == "slowdown")
    slowest = max(g.seconds for g in gate_runs)
    mean = sum(g.seconds for g in gate_runs) / len(gate_runs)
    print(f"\nfalse alarms: {false_alarms}/{args.runs} unchanged runs")
    print(f"detections:   {detections}/{args.runs} runs with feed:delay={args.slowdown}")
    print(f"gate run time: mean {mean:.1f}s, max {slowest:.1f}s (measure + compare)")
    known = [g.pressure for g in gate_runs if g.pressure is not None]
    if known:
        print(f"cpu pressure (Linux PSI, share of time some task waited for a CPU): "
              f"mean {sum(known) / len(known):.0%}, min {min(known):.0%}, max {max(known):.0%}")
    ok = (false_alarms <= args.runs // 10 and detections >= args.runs - args.runs // 10
          and slowest < 60)
    print("target met" if ok else "target NOT met")
    if keep is not None:
        (keep / "summary.json").write_text(json.dumps({
            "command": sys.argv, "false_alarms": false_alarms, "detections": detections,
            "runs": args.runs, "max_seconds": slowest}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
