"""How close together do N coordinated worker processes start a load? (one host)

    .venv/bin/python benchmarks/start_spread.py [--workers 4] [--repeats 9] [--seconds 1]

Starts the engine's test server and a coordinator on 127.0.0.1, then N worker processes
that each run ``--repeats`` coordinated loads (the real engine, ``load.run(start_at=...)``,
one user each). Twice: with every clock true, and with worker 0's wall clock shifted 2 s
ahead (``time.time`` patched in that process, so the engine and the client both see it).

Two spreads per load, both latest start minus earliest start:

* *true*: from each worker's unshifted ``time.time()`` at the instant the engine started
  (one host, so one common clock): what really happened;
* *measured*: what the coordinator recorded (each worker's reported start, in its own
  clock, converted with the offset the coordinator measured).

Prints the medians and maxima over the repeats, the skewed worker's measured offset, and the
load average before and after. Targets: true spread < 10 ms, and < 50 ms with the skew.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def worker_main(args: argparse.Namespace) -> int:
    real_time = time.time
    if args.shift:
        shift = args.shift
        time.time = lambda: real_time() + shift  # what the engine and the client read

    from pytest_minigram.coordination import LoadFailed, Timeouts, WorkerClient
    from pytest_minigram.load import Closed, Journey, VirtualUser, run

    async def iteration(user: VirtualUser) -> None:
        await user.get("/d?delay_ms=1", name="d")

    journey = Journey("spread", iteration)
    timeouts = Timeouts(barrier=60.0)
    with WorkerClient(args.address, os.environ["MINIGRAM_COORD_SECRET"], args.worker,
                      timeouts=timeouts).connect() as client:
        for i in range(args.repeats):
            key = (args.test, i)
            starts: list[float] = []
            try:
                with client.arrive(key, expected_duration=args.seconds) as load:

                    def on_start(at: float, load=load, starts=starts) -> None:  # type: ignore[no-untyped-def]
                        starts.append(real_time())
                        load.on_start(at)

                    part = run(Closed(users=1, duration=args.seconds), journey, args.target,
                               start_at=load.start_at, stop_event=load.stop, seed=load.index,
                               on_start=on_start, on_second=load.on_second)
                    load.finish(part)
                print(json.dumps({"key": i, "real": starts[0]}), flush=True)
            except LoadFailed as exc:
                print(json.dumps({"key": i, "failed": exc.reason}), flush=True)
    return 0


def run_config(n: int, repeats: int, seconds: float, shift: float, url: str,
               label: str) -> dict[str, object]:
    from pytest_minigram.coordination import Coordinator, Timeouts

    names = [f"w{i}" for i in range(n)]
    test = f"bench/start_spread::{label}"
    with Coordinator(workers=names, timeouts=Timeouts(barrier=60.0)) as coord:
        env = {**os.environ, "MINIGRAM_COORD_SECRET": coord.secret.hex()}
        address = f"{coord.address[0]}:{coord.address[1]}"
        procs = [subprocess.Popen(
            [sys.executable, __file__, "--as-worker", "--address", address, "--worker", name,
             "--target", url, "--test", test, "--repeats", str(repeats), "--seconds",
             str(seconds), "--shift", str(shift if i == 0 else 0.0)],
            stdout=subprocess.PIPE, text=True, env=env) for i, name in enumerate(names)]
        outs = [p.communicate(timeout=120 + repeats * (seconds + 5))[0] for p in procs]
        outcomes = [coord.wait_load((test, i), 30) for i in range(repeats)]
    failed = [o.reason for o in outcomes if not o.ok]
    if failed:
        raise SystemExit(f"{label}: {len(failed)} load(s) failed: {failed[0]}")
    real: list[list[float]] = [[] for _ in range(repeats)]
    for out in outs:
        for line in out.splitlines():
            row = json.loads(line)
            real[row["key"]].append(row["real"])
    true_spreads = [max(r) - min(r) for r in real]
    measured = [float(o.start_spread or 0.0) for o in outcomes]
    offsets = [o.offsets["w0"].offset for o in outcomes]
    rtts = [o.offsets["w0"].rtt for o in outcomes]
    return {"true": true_spreads, "measured": measured, "offset_w0": offsets, "rtt_w0": rtts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--test", help=argparse.SUPPRESS)
    parser.add_argument("--shift", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        return worker_main(args)

    from pytest_minigram.load.testserver import ServerProcess

    print(f"{args.workers} worker processes, {args.repeats} loads each config, "
          f"{os.cpu_count()} cores; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ms = 1e3
    with ServerProcess() as srv:
        for label, shift in (("true clocks", 0.0), ("w0 clock +2 s", 2.0)):
            r = run_config(args.workers, args.repeats, args.seconds, shift, srv.url,
                           label.replace(" ", "_"))
            true, measured = r["true"], r["measured"]
            assert isinstance(true, list) and isinstance(measured, list)
            offsets, rtts = r["offset_w0"], r["rtt_w0"]
            assert isinstance(offsets, list) and isinstance(rtts, list)
            print(f"{label:>14}: true spread median {statistics.median(true) * ms:6.2f} ms "
                  f"(max {max(true) * ms:6.2f}), measured median "
                  f"{statistics.median(measured) * ms:6.2f} ms (max {max(measured) * ms:6.2f}); "
                  f"w0 offset median {statistics.median(offsets):+.6f} s, "
                  f"rtt median {statistics.median(rtts) * 1e6:.0f} us")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
