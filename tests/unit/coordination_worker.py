"""A worker process for tests/unit/test_coordination.py and the coordination benchmarks.

    python tests/unit/coordination_worker.py --address HOST:PORT --worker alpha [options]

The secret comes from $MINIGRAM_COORD_SECRET (hex). ``--shift S`` moves this process's wall
clock ``time.time`` by S seconds (what the engine and the client both read), to simulate a
skewed machine; the true time is still printed as ``real``. Prints one JSON object per line:
``joined``, then per load ``started`` (with the real start instant), and ``merged`` (with the
partial and merged results) or ``failed``.

``--mode engine`` runs the real engine against ``--target``; ``--mode fake`` records
synthetic requests without HTTP (``--rps`` per second for ``--seconds`` seconds, paced in
real time with ``--real-time``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_minigram.coordination import Load
    from pytest_minigram.load import Result

_REAL_TIME = time.time


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _fake_run(lo: Load, args: argparse.Namespace, seed: int) -> Result:
    from pytest_minigram.load.recorder import Recorder

    time.sleep(max(0.0, lo.start_at - time.time()))
    rec = Recorder()
    rec.started = time.time()
    lo.on_start(rec.started)
    _emit("started", key=list(lo.key), real=_REAL_TIME(), clock=rec.started)
    rnd = random.Random(seed)
    t0 = _REAL_TIME()
    done = 0
    for second in range(args.seconds):
        if lo.stop.is_set():
            break
        for i in range(args.rps):
            rec.record(args.action, rnd.uniform(0.001, 0.05), 0.0, i % 97 == 0)
        lo.on_second(rec.delta(rec.tick(args.users)))
        done += 1
        if args.real_time:
            lo.stop.wait(max(0.0, t0 + second + 1 - _REAL_TIME()))
    return rec.result(duration=float(done), workload={"model": "closed", "users": args.users},
                      labels={"worker": args.worker}, interrupted=lo.stop.is_set(),
                      generator={"processes": 1, "cpu_mean": 0.1, "cpu_max": 0.2,
                                 "saturated": False, "saturated_fraction": 0.0})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--mode", choices=("fake", "engine"), default="fake")
    parser.add_argument("--target", default="")
    parser.add_argument("--test", default="tests/x.py::test_load")
    parser.add_argument("--loads", type=int, default=1)
    parser.add_argument("--first-call", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rps", type=int, default=200)
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--action", default="get")
    parser.add_argument("--real-time", action="store_true")
    parser.add_argument("--expected", type=float, default=None)
    parser.add_argument("--touch", default="", help="create this file first (isolation test)")
    parser.add_argument("--timeouts", default="{}", help="Timeouts fields as JSON")
    args = parser.parse_args()

    if args.shift:
        shift = args.shift
        time.time = lambda: _REAL_TIME() + shift  # the engine and the client read time.time
    if args.touch:
        with open(args.touch, "w") as f:
            f.write(str(os.getpid()))

    from pytest_minigram.coordination import LoadFailed, Timeouts, WorkerClient
    from pytest_minigram.load import Closed, Journey, VirtualUser, run

    timeouts = Timeouts(**json.loads(args.timeouts))
    client = WorkerClient(args.address, os.environ["MINIGRAM_COORD_SECRET"], args.worker,
                          timeouts=timeouts).connect()
    _emit("joined", pid=os.getpid())

    async def iteration(user: VirtualUser) -> None:
        await user.get("/d?delay_ms=2", name="d")

    journey = Journey("coord", iteration)
    try:
        for call in range(args.first_call, args.first_call + args.loads):
            key = (args.test, call)
            try:
                expected = args.expected if args.expected is not None else float(args.seconds)
                with client.arrive(key, expected_duration=expected) as load:
                    if args.mode == "engine":
                        wl = Closed(users=args.users, duration=float(args.seconds))
                        starts: list[float] = []

                        def on_start(at: float, load: Load = load,
                                     starts: list[float] = starts) -> None:
                            starts.append(_REAL_TIME())
                            load.on_start(at)

                        partial = run(wl.split(load.count)[load.index], journey, args.target,
                                      start_at=load.start_at, stop_event=load.stop,
                                      seed=load.index, on_start=on_start,
                                      on_second=load.on_second)
                        _emit("started", key=list(key), real=starts[0],
                              clock=partial.started_at)
                    else:
                        partial = _fake_run(load, args, seed=hash((args.worker, call)) % 1000)
                    merged = load.finish(partial)
                _emit("merged", key=list(key), partial=partial.to_dict(),
                      merged=merged.to_dict())
            except LoadFailed as exc:
                _emit("failed", key=list(key), reason=exc.reason, workers=list(exc.workers))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
