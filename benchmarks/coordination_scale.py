"""Controller cost of coordinating many workers: RSS and merge CPU per simulated hour.

    .venv/bin/python benchmarks/coordination_scale.py [--workers 64] [--seconds 3600]
                                                      [--rps 1000] [--procs 4]

The coordinator runs in this process, as on the controller. ``--workers`` simulated workers
(real ``WorkerClient`` connections, spread over ``--procs`` processes) each join one load and
stream ``--seconds`` per-second deltas of ``--rps`` requests (synthetic latency histograms,
60 distinct ones in rotation), time-compressed: sent as fast as the coordinator takes them.
Then each sends its partial result (totals and histograms, no time series), and waits for the
merged result.

Reported for this process (the controller): RSS before, peak and after; CPU seconds (user +
system, all threads) from the first arrival to the merged result being sent to every worker,
and that figure per simulated hour; the wall time and the delta rate; the load average.
Targets for 64 workers and one hour: RSS under 500 MB, CPU under 180 s (5 % of a core).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TEST = "bench/coordination_scale::test_hour"
POOL = 60


def _pool(rps: int, seed: int) -> list[tuple[str, int, Any]]:
    """Distinct one-second histograms: (encoded blob, errors, histogram)."""
    from pytest_minigram.load.result import new_histogram

    rnd = random.Random(seed)
    out = []
    for _ in range(POOL):
        hist = new_histogram()
        mu = rnd.uniform(9.0, 10.5)  # median 8 to 36 ms
        for _ in range(rps):
            hist.record_value(min(int(rnd.lognormvariate(mu, 0.7)), 3_000_000_000))
        blob = hist.encode()
        out.append((blob.decode() if isinstance(blob, bytes) else blob, rnd.randint(0, 5),
                    hist))
    return out


def sim_main(args: argparse.Namespace) -> int:
    from pytest_minigram.coordination import Timeouts, WorkerClient
    from pytest_minigram.load.result import ActionStats, Result, new_histogram

    pool = _pool(args.rps, seed=args.proc)
    count = args.seconds * args.rps
    timeouts = Timeouts(barrier=120.0, grace=600.0)
    names = args.names.split(",")
    report: dict[str, Any] = {}

    def totals(rotation: int) -> tuple[Any, int]:
        """The histogram and errors of all the seconds a worker sends."""
        hist = new_histogram()
        for t in range(args.seconds):
            hist.add(pool[(t + rotation) % POOL][2])
        return hist, sum(pool[(t + rotation) % POOL][1] for t in range(args.seconds))

    def one(name: str, rotation: int) -> None:
        try:
            run_one(name, rotation)
        except BaseException as exc:
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            raise

    def run_one(name: str, rotation: int) -> None:
        total_hist, errors = totals(rotation)
        with WorkerClient(args.address, os.environ["MINIGRAM_COORD_SECRET"], name,
                          timeouts=timeouts).connect() as client:
            with client.arrive((TEST, 0), expected_duration=float(args.seconds)) as load:
                time.sleep(max(0.0, load.start_at - time.time()))
                started = time.time()
                load.on_start(started)
                for t in range(args.seconds):
                    blob, errs, _ = pool[(t + rotation) % POOL]
                    load.on_second({"t": t, "requests": args.rps, "errors": errs, "users": 10,
                                    "p50": 0.02, "p95": 0.05, "histogram": blob,
                                    "actions": {"get": {"count": args.rps, "errors": errs}}})
                stats = ActionStats()
                stats.histogram = total_hist
                stats.count, stats.errors = count, errors
                stats.apdex_counts = [count - errors, 0, errors]
                part = Result(workload={"model": "closed", "users": 10}, labels={"w": name},
                              started_at=started, duration=float(args.seconds),
                              iterations=count, total=stats, actions={"get": stats},
                              generator={"processes": 1, "cpu_mean": 0.5, "cpu_max": 0.6,
                                         "saturated": False, "saturated_fraction": 0.0})
                merged = load.finish(part, timeout=3600.0)
                report[name] = merged.count

    threads = [threading.Thread(target=one, args=(name, i * 7)) for i, name in
               enumerate(names)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps(report), flush=True)
    return 0


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--rps", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--as-sim", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--proc", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_sim:
        return sim_main(args)

    from pytest_minigram.coordination import Coordinator, Timeouts

    names = [f"sim{i:02d}" for i in range(args.workers)]
    load_before = os.getloadavg()
    coord = Coordinator(workers=names, timeouts=Timeouts(barrier=120.0, grace=600.0)).start()
    rss_before = rss_mb()
    env = {**os.environ, "MINIGRAM_COORD_SECRET": coord.secret.hex()}
    address = f"{coord.address[0]}:{coord.address[1]}"
    groups = [names[i::args.procs] for i in range(args.procs)]
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--as-sim", "--address", address, "--names", ",".join(g),
         "--proc", str(i), "--seconds", str(args.seconds), "--rps", str(args.rps)],
        stdout=subprocess.PIPE, text=True, env=env) for i, g in enumerate(groups) if g]
    peak = rss_before
    cpu0 = wall0 = None
    key = (TEST, 0)
    try:
        while True:  # sample this process's RSS; start the clocks at the first arrival
            live = coord.live_loads().get(key)
            if cpu0 is None and live is not None:
                cpu0, wall0 = time.process_time(), time.monotonic()
            peak = max(peak, rss_mb())
            if live is None and cpu0 is not None:
                break
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit("a simulated worker process failed")
            time.sleep(0.2)
        outcome = coord.wait_load(key, 60)
        outs = [p.communicate(timeout=600)[0] for p in procs]  # the merged result is sent
        cpu = time.process_time() - (cpu0 or 0.0)
        wall = time.monotonic() - (wall0 or 0.0)
        peak = max(peak, rss_mb())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        coord.close()
    if not outcome.ok or outcome.result is None:
        raise SystemExit(f"the load failed: {outcome.reason}")
    result = outcome.result
    expected = args.workers * args.seconds * args.rps
    per_worker = {}
    for out in outs:
        per_worker.update(json.loads(out.strip().splitlines()[-1]))
    assert result.count == expected, (result.count, expected)
    assert all(v == expected for v in per_worker.values()) and len(per_worker) == args.workers
    assert len(result.timeseries) == args.seconds
    assert all(r["requests"] == args.workers * args.rps for r in result.timeseries)
    hours = args.seconds / 3600
    deltas = args.workers * args.seconds
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.workers} workers x {args.seconds} s x {args.rps} req/s "
          f"({deltas} deltas, {expected} requests) over {len(procs)} sender processes; "
          f"{os.cpu_count()} cores")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}, after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"controller RSS: before {rss_before:.0f} MB, peak {peak:.0f} MB (sampled every "
          f"0.2 s; ru_maxrss {maxrss:.0f} MB)")
    print(f"controller CPU: {cpu:.1f} s over {wall:.1f} s wall ({deltas / wall:.0f} deltas/s) "
          f"= {cpu / hours:.1f} s per simulated hour = {cpu / hours / 3600 * 100:.2f} % of "
          f"one core during a real-time hour")
    print(f"checks: merged count {result.count} = sum of workers' counts; "
          f"{len(result.timeseries)} merged seconds of {args.workers * args.rps} requests each; "
          f"every worker got the merged result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
