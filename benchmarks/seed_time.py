"""How long ``minigram seed --users 10000 --photos 100000`` takes, for the README.

    .venv/bin/python benchmarks/seed_time.py [--repeat 3] [--users 10000] [--photos 100000]
                                             [--stages 2 1.5] [--budget 60]

Each repeat runs the real CLI (``python -m minigram seed``) in its own process, on an empty
database and an empty media directory: on stage 2 a fresh PostgreSQL database (on
``MINIGRAM_PG_URL``, or a throwaway server from the installed binaries), on stage 1/1.5 a fresh
SQLite file. The wall time includes the migrations, the bcrypt hash, the photo files (hard
links) and the final ANALYZE. The script prints the median and range per stage, the phase
times of the median run as ``minigram seed`` printed them, and the median as a share of the
budget; it exits 1 if a stage's median is over the budget.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_minigram.minigram_harness.backends import postgres  # noqa: E402

PHASE = re.compile(r"^(users|follows|photos|likes): (\d+) added.*\((\d+\.\d+)s\)$")


def run_seed(stage: str, users: int, photos: int, env: dict[str, str]) -> tuple[float, str]:
    argv = [
        sys.executable, "-m", "minigram", "seed", "--stage", stage,
        "--users", str(users), "--photos", str(photos),
    ]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"minigram seed failed on stage {stage}:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def once(stage: str, users: int, photos: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="minigram-seed-") as tmp:
        env = {
            **os.environ,
            "MINIGRAM_DATA_DIR": tmp,
            "MINIGRAM_MEDIA_DIR": str(Path(tmp) / "media"),
        }
        env.pop("MINIGRAM_DATABASE_URL", None)
        if stage != "2":
            return run_seed(stage, users, photos, env)
        with postgres(os.environ.get("MINIGRAM_PG_URL")) as pg:
            env["MINIGRAM_DATABASE_URL"] = pg.url
            return run_seed(stage, users, photos, env)


def phases(stdout: str) -> str:
    found = [PHASE.match(line) for line in stdout.splitlines()]
    return ", ".join(f"{m[2]} {m[1]} in {m[3]} s" for m in found if m)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--stages", nargs="+", default=["2", "1.5"], choices=["1", "1.5", "2"])
    parser.add_argument("--budget", type=float, default=60.0, help="seconds (the issue's limit)")
    args = parser.parse_args()

    print(f"minigram seed --users {args.users} --photos {args.photos}, {args.repeat} repeats, "
          f"load average {os.getloadavg()[0]:.2f}")
    over = False
    for stage in args.stages:
        runs = [once(stage, args.users, args.photos) for _ in range(args.repeat)]
        times = sorted(t for t, _ in runs)
        median = statistics.median(times)
        middle = min(runs, key=lambda run: abs(run[0] - median))
        print(f"stage {stage}: median {median:.1f} s (range {times[0]:.1f}-{times[-1]:.1f} s), "
              f"{median / args.budget:.2f} of the {args.budget:.0f} s budget")
        print(f"  phases of the median run: {phases(middle[1])}")
        over |= median > args.budget
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
