"""How much CPU does the load generator spend per request? Ours vs wrk vs Locust FastHttpUser.

    .venv/bin/python benchmarks/generator_efficiency.py [--seconds 8] [--repeat 3]
                                                       [--connections 32] [--memory-users 10000]

Starts a trivial JSON endpoint (uvicorn, one worker) in a subprocess, then runs each generator
in turn against it, in its own process, at the same number of connections for a fixed time.
CPU is the generator process's user+system time during the load (for wrk, its whole run).
Prints the median CPU seconds per 1000 requests of each tool and the ratios. Then checks that
one engine process holds many closed-model users with long think time, and prints its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time

APP = '''
import uvicorn
BODY = b'{"hello":"world"}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning",
            access_log=False, workers=1, backlog=16384)
'''

OURS = '''
import json, resource, sys
from pytest_minigram.load import Closed, Journey, run
url, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def hit(user):
    await user.get("/", name="root")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
before = cpu()
result = run(Closed(users=users, duration=seconds), Journey("bench", hit), url)
used = cpu() - before
print(json.dumps({"requests": result.count, "errors": result.total.errors, "cpu": used,
                  "p50": result.p50}))
'''

MEMORY = '''
import json, resource, sys
from pytest_minigram.load import Closed, Journey, run
url, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def idle(user):
    await user.get("/", name="root")
result = run(Closed(users=users, duration=seconds, ramp_up=seconds / 2, think_time=(60.0, 120.0)),
             Journey("idle", idle), url)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"requests": result.count, "errors": result.total.errors,
                  "error_kinds": sorted(result.errors), "peak_rss_mb": peak,
                  "max_users": max(r["users"] for r in result.timeseries)}))
'''

LOCUST = '''
import gevent.monkey
gevent.monkey.patch_all()
import json, resource, sys, gevent
from locust import constant
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust import task
url, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
class Bench(FastHttpUser):
    host = url
    wait_time = constant(0)
    @task
    def root(self):
        self.client.get("/", name="root")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
env = Environment(user_classes=[Bench])
runner = env.create_local_runner()
before = cpu()
runner.start(users, spawn_rate=users)
gevent.sleep(seconds)
runner.quit()
used = cpu() - before
total = env.stats.total
print(json.dumps({"requests": total.num_requests, "errors": total.num_failures, "cpu": used,
                  "p50": total.get_response_time_percentile(0.5) / 1000}))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def run_python(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"generator failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_wrk(url: str, connections: int, seconds: float) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", url],
                         capture_output=True, text=True, check=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"(\d+) requests in", out.stdout)
    if not m:
        raise RuntimeError(f"cannot read wrk output:\n{out.stdout}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"requests": int(m.group(1)), "errors": int(errors.group(1)) if errors else 0,
            "cpu": cpu}


def have_locust() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import locust.contrib.fasthttp"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generator CPU per 1000 requests")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--memory-users", type=int, default=10_000,
                        help="Closed-model users for the memory check (0 to skip)")
    args = parser.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", APP, str(port)])
    try:
        wait_ready(port)
        tools: dict[str, object] = {"ours": lambda: run_python(
            OURS, url, str(args.connections), str(args.seconds))}
        if shutil.which("wrk"):
            tools["wrk"] = lambda: run_wrk(url + "/", args.connections, args.seconds)
        else:
            print("wrk not on PATH: skipped")
        if have_locust():
            tools["locust-fasthttp"] = lambda: run_python(
                LOCUST, url, str(args.connections), str(args.seconds))
        else:
            print("locust not importable (pip install '.[bench]'): skipped")
        per_1000: dict[str, list[float]] = {name: [] for name in tools}
        rates: dict[str, list[float]] = {name: [] for name in tools}
        for i in range(args.repeat):
            for name, fn in tools.items():
                m = fn()  # type: ignore[operator]
                if m["requests"] == 0 or m["errors"]:
                    raise RuntimeError(f"{name}: bad run {m}")
                per_1000[name].append(m["cpu"] / m["requests"] * 1000)
                rates[name].append(m["requests"] / args.seconds)
                print(f"round {i + 1} {name:16} {m['requests']:8d} req "
                      f"{m['requests'] / args.seconds:8.0f} req/s  cpu {m['cpu']:6.2f} s  "
                      f"{per_1000[name][-1]:.4f} s/1000 req", flush=True)
        print(f"\nmedian generator CPU seconds per 1000 requests "
              f"({args.connections} connections, {args.seconds:g} s, {args.repeat} rounds):")
        med = {name: statistics.median(v) for name, v in per_1000.items()}
        for name, value in med.items():
            print(f"  {name:16} {value:.4f}   ({statistics.median(rates[name]):.0f} req/s)")
        if "wrk" in med:
            print(f"  ours / wrk               {med['ours'] / med['wrk']:.2f}x  (target <= 2)")
        if "locust-fasthttp" in med:
            print(f"  locust-fasthttp / ours   {med['locust-fasthttp'] / med['ours']:.2f}x  "
                  "(target >= 3)")
        if args.memory_users:
            m = run_python(MEMORY, url, str(args.memory_users), "10")
            print(f"\n{args.memory_users} closed-model users, think time 60-120 s: "
                  f"peak RSS {m['peak_rss_mb']:.0f} MB (target < 500), {m['requests']:.0f} "
                  f"requests, {m['max_users']:.0f} users active, errors {m['error_kinds']}")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
