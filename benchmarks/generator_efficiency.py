"""How much CPU does the load generator spend per request? Ours vs wrk vs Locust FastHttpUser,
over plain HTTP and over TLS.

    .venv/bin/python benchmarks/generator_efficiency.py [--seconds 8] [--repeat 3]
                                                       [--connections 32] [--memory-users 10000]
                                                       [--no-tls] [--live]

Starts a trivial JSON endpoint (uvicorn, one worker) in a subprocess, serving the same app on
two ports, plain and TLS (a throwaway certificate from trustme, the test extra), then runs each
generator in turn against each port, in its own process, at the same number of connections for
a fixed time. Our engine verifies the certificate against the throwaway CA; wrk does not verify.
Connections are kept alive, so the TLS figures are mostly the cost of encryption, plus one
handshake per connection. CPU is the generator process's user+system time during the load (for
wrk, its whole run). Prints the median CPU seconds per 1000 requests of each tool, plain and TLS
side by side, and the ratios. Then checks that one engine process holds many closed-model users
with long think time, and prints its peak RSS.

``--live`` adds, in the same rounds, our engine inside a pytest session (a perf test of
``--connections`` users, no xdist) run with ``--minigram-quiet`` and with ``--minigram-live
--minigram-prometheus`` (the live line, the page and the metrics, per-action histograms
included): what watching a load costs the generator, as the ratio live / quiet, beside the
spread of the quiet runs themselves (the noise the ratio must be read against). The session's
CPU is the engine process's during the load, from the result's generator monitor.
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
import tempfile
import time
from collections.abc import Callable
from typing import Any

APP = '''
import asyncio, sys
import uvicorn
BODY = b'{"hello":"world"}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
def config(port, **tls):
    return uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                          access_log=False, backlog=16384, **tls)
if len(sys.argv) == 2:
    uvicorn.Server(config(int(sys.argv[1]))).run()
else:  # plain port, TLS port, certificate, key: one process, one event loop, the same app
    plain = uvicorn.Server(config(int(sys.argv[1])))
    tls = uvicorn.Server(config(int(sys.argv[2]), ssl_certfile=sys.argv[3],
                                ssl_keyfile=sys.argv[4]))
    async def both():
        await asyncio.gather(plain.serve(), tls.serve())
    asyncio.run(both())
'''

OURS = '''
import json, resource, sys
from pytest_minigram.load import Closed, Journey, run
url, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ca_bundle = sys.argv[4] if len(sys.argv) > 4 else None
async def hit(user):
    await user.get("/", name="root")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
before = cpu()
result = run(Closed(users=users, duration=seconds), Journey("bench", hit), url,
             ca_bundle=ca_bundle)
used = cpu() - before
print(json.dumps({"requests": result.count, "errors": result.total.errors, "cpu": used,
                  "p50": result.p50, "handshakes": result.tls.count}))
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


PYTEST_CONFTEST = '''
import os
import pytest

@pytest.fixture
def minigram_target():
    return os.environ["BENCH_URL"]
'''

PYTEST_TEST = '''
import os
import pytest

async def hit(user):
    await user.get("/", name="root")

@pytest.mark.perf
def test_bench(minigram_load):
    minigram_load(hit, users=int(os.environ["BENCH_USERS"]),
                  duration=float(os.environ["BENCH_SECONDS"]))
'''

PYTEST_CONFIGS = {"pytest-quiet": ["-q", "--minigram-quiet"],
                  "pytest-live": ["-v", "--minigram-live", "--minigram-prometheus"]}


def run_pytest(project: str, url: str, users: str, seconds: str,
               args: list[str]) -> dict[str, Any]:
    """One pytest session with a perf test of our engine; its generator CPU from the result."""
    out = os.path.join(project, "run.json")
    env = {**os.environ, "BENCH_URL": url, "BENCH_USERS": users, "BENCH_SECONDS": seconds}
    env.pop("PYTEST_ADDOPTS", None)
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
                    "-o", "addopts=", *args, f"--minigram-results={out}", "test_bench.py"],
                   cwd=project, env=env, check=True, capture_output=True, text=True,
                   timeout=600)
    with open(out) as f:
        (test,) = json.load(f)["tests"]
    result = test["result"]
    return {"requests": result["total"]["count"], "errors": result["total"]["errors"],
            "cpu": result["generator"]["cpu_mean"] * result["duration"]}


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


def run_python(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"generator failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_wrk(url: str, connections: int, seconds: float) -> dict[str, Any]:
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


def make_certificate(directory: str) -> tuple[str, str, str] | None:
    """(CA bundle, certificate chain, key) for 127.0.0.1, or None without trustme."""
    try:
        import trustme
    except ImportError:
        return None
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = [os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem")]
    ca.cert_pem.write_to_path(paths[0])
    with open(paths[1], "wb") as f:
        f.write(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]


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
    parser.add_argument("--no-tls", action="store_true", help="Plain HTTP only")
    parser.add_argument("--live", action="store_true",
                        help="Also our engine in a pytest session, quiet and with "
                             "--minigram-live --minigram-prometheus")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")

    port, tls_port = free_port(), free_port()
    url, tls_url = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}"
    tmp = tempfile.mkdtemp(prefix="generator-efficiency-")
    pems = None if args.no_tls else make_certificate(tmp)
    if pems is None and not args.no_tls:
        print("trustme not importable (pip install '.[test]'): TLS skipped")
    server_args = [str(port)] if pems is None else [str(port), str(tls_port), pems[1], pems[2]]
    server = subprocess.Popen([sys.executable, "-c", APP, *server_args])
    conns, secs = str(args.connections), str(args.seconds)
    try:
        wait_ready(port)
        tools: dict[str, Callable[[], dict[str, Any]]] = {
            "ours": lambda: run_python(OURS, url, conns, secs)}
        if pems is not None:
            wait_ready(tls_port)
            tools["ours+tls"] = lambda: run_python(OURS, tls_url, conns, secs, pems[0])
        if shutil.which("wrk"):
            tools["wrk"] = lambda: run_wrk(url + "/", args.connections, args.seconds)
            if pems is not None:
                tools["wrk+tls"] = lambda: run_wrk(tls_url + "/", args.connections,
                                                   args.seconds)
        else:
            print("wrk not on PATH: skipped")
        if have_locust():
            tools["locust-fasthttp"] = lambda: run_python(LOCUST, url, conns, secs)
        else:
            print("locust not importable (pip install '.[bench]'): skipped")
        if args.live:
            with open(os.path.join(tmp, "conftest.py"), "w") as f:
                f.write(PYTEST_CONFTEST)
            with open(os.path.join(tmp, "test_bench.py"), "w") as f:
                f.write(PYTEST_TEST)
            for name, extra in PYTEST_CONFIGS.items():
                tools[name] = (lambda extra=extra:  # type: ignore[misc]
                               run_pytest(tmp, url, conns, secs, extra))
        per_1000: dict[str, list[float]] = {name: [] for name in tools}
        rates: dict[str, list[float]] = {name: [] for name in tools}
        for i in range(args.repeat):
            for name, fn in tools.items():
                m = fn()
                if m["requests"] == 0 or m["errors"]:
                    raise RuntimeError(f"{name}: bad run {m}")
                per_1000[name].append(m["cpu"] / m["requests"] * 1000)
                rates[name].append(m["requests"] / args.seconds)
                extra = f"  {m['handshakes']:.0f} handshakes" if "handshakes" in m and (
                    name.endswith("+tls")) else ""
                print(f"round {i + 1} {name:16} {m['requests']:8d} req "
                      f"{m['requests'] / args.seconds:8.0f} req/s  cpu {m['cpu']:6.2f} s  "
                      f"{per_1000[name][-1]:.4f} s/1000 req{extra}", flush=True)
        print(f"\nmedian generator CPU seconds per 1000 requests "
              f"({args.connections} connections, {args.seconds:g} s, {args.repeat} rounds):")
        med = {name: statistics.median(v) for name, v in per_1000.items()}
        rate = {name: statistics.median(v) for name, v in rates.items()}
        print(f"  {'':16} {'http':>8} {'https':>8} {'https/http':>11}")
        for name in [n for n in tools if not n.endswith("+tls")]:
            line = f"  {name:16} {med[name]:8.4f}"
            tls_name = name + "+tls"
            if tls_name in med:
                line += (f" {med[tls_name]:8.4f} {med[tls_name] / med[name]:10.2f}x"
                         f"   ({rate[name]:.0f} / {rate[tls_name]:.0f} req/s)")
            else:
                line += f" {'-':>8} {'-':>11}   ({rate[name]:.0f} req/s)"
            print(line)
        if "wrk" in med:
            print(f"  ours / wrk               {med['ours'] / med['wrk']:.2f}x  (target <= 1.25)")
            if "wrk+tls" in med and "ours+tls" in med:
                print(f"  ours / wrk over TLS      {med['ours+tls'] / med['wrk+tls']:.2f}x")
        if "locust-fasthttp" in med:
            print(f"  locust-fasthttp / ours   {med['locust-fasthttp'] / med['ours']:.2f}x  "
                  "(target >= 3)")
        if args.live:
            quiet = per_1000["pytest-quiet"]
            print(f"  pytest live / quiet      "
                  f"{med['pytest-live'] / med['pytest-quiet']:.3f}x CPU per request "
                  f"(quiet runs spread {min(quiet) / med['pytest-quiet']:.3f}-"
                  f"{max(quiet) / med['pytest-quiet']:.3f}x of their median; "
                  f"req/s {rate['pytest-live'] / rate['pytest-quiet']:.3f}x)")
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
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
