"""What does watching a load cost the generator? The same perf test with and without
``--minigram-live --minigram-prometheus`` (and the live line), side by side.

    .venv/bin/python benchmarks/live_overhead.py [--seconds 8] [--repeat 3] [--users 16]

Starts the trivial JSON endpoint of ``generator_efficiency.py`` (uvicorn, one worker), then
runs one pytest session per configuration in turn (ABAB...), each a perf test of ``--users``
closed-model users for ``--seconds`` against it, and reads the results file: requests per
second and the generator's CPU seconds per 1000 requests (its mean CPU x duration / count).
Prints the medians and the ratios live / quiet, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from generator_efficiency import APP, free_port, wait_ready  # noqa: E402

CONFTEST = '''
import os
import pytest

@pytest.fixture
def minigram_target():
    return os.environ["BENCH_URL"]
'''

TEST = '''
import os
import pytest

async def hit(user):
    await user.get("/", name="root")

@pytest.mark.perf
def test_bench(minigram_load):
    minigram_load(hit, users=int(os.environ["BENCH_USERS"]),
                  duration=float(os.environ["BENCH_SECONDS"]))
'''

CONFIGS = {"quiet": ["--minigram-quiet"],
           "live": ["--minigram-live", "--minigram-prometheus"]}


def _session(project: Path, args: list[str], env: dict[str, str]) -> dict[str, float]:
    out = project / "run.json"
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                    "-q" if "--minigram-quiet" in args else "-v", *args,
                    f"--minigram-results={out}", "test_bench.py"], cwd=project, env=env,
                   check=True, capture_output=True, text=True, timeout=600)
    (test,) = json.loads(out.read_text())["tests"]
    result = test["result"]
    count, duration = result["total"]["count"], result["duration"]
    cpu = result["generator"]["cpu_mean"] * duration
    return {"rps": count / duration, "cpu_per_1000": 1000 * cpu / count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generator cost of --minigram-live")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "app.py").write_text(APP)
        (project / "conftest.py").write_text(CONFTEST)
        (project / "test_bench.py").write_text(TEST)
        server = subprocess.Popen([sys.executable, "app.py", str(port)], cwd=project)
        try:
            wait_ready(port)
            env = {**os.environ, "BENCH_URL": f"http://127.0.0.1:{port}",
                   "BENCH_USERS": str(args.users), "BENCH_SECONDS": str(args.seconds)}
            env.pop("PYTEST_ADDOPTS", None)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
            for _ in range(args.repeat):
                for name, extra in CONFIGS.items():
                    runs[name].append(_session(project, extra, env))
                    time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(10)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("rps", "cpu_per_1000")}
           for name, rs in runs.items()}
    for name, m in med.items():
        print(f"{name:6} req/s {m['rps']:8.1f}   generator CPU s / 1000 requests "
              f"{m['cpu_per_1000']:.4f}   ({args.repeat} runs of {args.seconds:g} s)")
    print(f"ratio live/quiet: req/s {med['live']['rps'] / med['quiet']['rps']:.3f}, "
          f"CPU per request {med['live']['cpu_per_1000'] / med['quiet']['cpu_per_1000']:.3f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
