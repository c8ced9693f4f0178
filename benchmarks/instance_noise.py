"""How much of the regression gate's noise comes from the server process itself?

    .venv/bin/python benchmarks/instance_noise.py [--servers 5] [--runs 2] [--duration 8]
                                                   [--stage 1] [--hash-seed random|N]

Seeds one throw-away Minigram database, then starts ``--servers``
fresh server processes one after another. Each is warmed up for 3 s and measured ``--runs``
times with the ``feed`` journey, one closed-model user. It prints the p50 and min of every run
and two spreads side by side: between runs of the same process, and between processes (the
range of the per-process medians, as a share of their median). When the second is much larger
than the first, a baseline recorded on one server process cannot stand for the next one,
however quiet the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hdrh.histogram import HdrHistogram  # noqa: E402

from pytest_minigram.load import Closed, run  # noqa: E402
from pytest_minigram.load.registry import get_journey  # noqa: E402
from pytest_minigram.server import ServerProcess, free_port  # noqa: E402

HOST = "127.0.0.1"


class Minigram:
    """A seeded data directory, and server processes on it."""

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


def measure(url: str, users: int, duration: float, seed_users: int) -> dict[str, Any]:
    workload = Closed(users=users, duration=duration, ramp_up=1.0)
    result = run(workload, get_journey("feed"), url, params={"seed_users": seed_users})
    return result.to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--stage", default="1", choices=("1", "1.5", "2"))
    parser.add_argument("--hash-seed", default="random",
                        help="PYTHONHASHSEED of the servers (default: random, as Python's)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="instance_noise-"))
    try:
        app = Minigram(args.stage, workdir, 100, 1000)
        if args.hash_seed != "random":
            app.env["PYTHONHASHSEED"] = args.hash_seed
        per_server: list[list[float]] = []
        for k in range(args.servers):
            server = app.server(f"s{k}")
            server.start(timeout=60)
            try:
                url = f"http://127.0.0.1:{server.port}"
                measure(url, 1, 3.0, 100)
                p50s = []
                for i in range(args.runs):
                    hist = HdrHistogram.decode(
                        measure(url, 1, args.duration, 100)["total"]["histogram"])
                    p50 = hist.get_value_at_percentile(50) / 1000
                    p50s.append(p50)
                    print(f"server {k} run {i}: p50 {p50:6.2f} ms  "
                          f"min {hist.get_min_value() / 1000:6.2f} ms", flush=True)
                per_server.append(p50s)
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    within = statistics.median(
        (max(p) - min(p)) / statistics.median(p) for p in per_server if len(p) > 1
    ) if args.runs > 1 else float("nan")
    medians = [statistics.median(p) for p in per_server]
    between = (max(medians) - min(medians)) / statistics.median(medians)
    print(f"\nspread of p50 between runs of one server (median over servers): {within:.1%}")
    print(f"spread of p50 between servers (range of their medians / median):  {between:.1%}")
    print(f"ratio between/within: {between / within:.1f}" if within else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
