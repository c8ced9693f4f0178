"""Minigram's hot paths against the framework's ceiling: wrk on each endpoint of each stage.

    apt-get install -y wrk
    .venv/bin/python benchmarks/app_capacity.py [--stages 1 1.5 2] [--duration 8] [--repeats 3]
                                                [--connections 32] [--endpoints feed profile ...]
                                                [--app-root DIR] [--alone 300]

Seeds each stage (1,000 users, 10,000 photos; stage 2 in a PostgreSQL database of its own,
dropped at the end, and Redis under a prefix of its own), starts ``minigram serve`` on it
(stage 2 with 2 workers), logs ``seed_user_1`` in, and starts the framework ceiling in the
same run: a plain Starlette ``GET /ping`` on uvicorn (httptools, uvloop, no middleware), with
1 and with 2 workers. Every row is then measured with ``wrk -t1 -c32`` (keep-alive) for
``--duration`` seconds, the rows taking turns within each repeat (a rotated order, so a noisy
neighbour hits them alike); the figures are medians over ``--repeats``. Each row's ratio is to
the ceiling with as many workers. Also printed: the servers' CPU per request (user + system
of all their processes over the run), and the server time of one request alone
(``Server-Timing: total``, median of ``--alone`` sequential requests on one connection, no
other load). Endpoints (all warmed up first, so "cached" means cached):

    feed     GET /api/feed?limit=20 as seed_user_1 (follows the popular accounts)
    profile  GET /api/users/seed_user_1
    photo    GET /api/photos/<id> as seed_user_1 (the newest photo of its feed)
    healthz  GET /healthz

``--app-root`` serves another checkout's ``minigram`` package (e.g. ``git archive HEAD~3
minigram | tar -x -C /tmp/before``), for before/after figures with one script. The load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from server_procs import cpu_seconds, wait_ready  # benchmarks/

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = re.sub(r"(//[^/]*)/.*$", r"\1",
                  os.environ.get("MINIGRAM_PG_URL", "postgresql://postgres@127.0.0.1:5432"))
REDIS_URL = os.environ.get("MINIGRAM_REDIS_URL", "redis://127.0.0.1:6379/0")
USERS, PHOTOS = 1000, 10_000

ENDPOINTS = {
    "feed": ("/api/feed?limit=20", True),
    "profile": ("/api/users/seed_user_1", False),
    "photo": ("/api/photos/{photo}", True),
    "healthz": ("/healthz", False),
}

CEILING_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def ping(request):
    return JSONResponse({"pong": True})

app = Starlette(routes=[Route("/ping", ping)])
'''


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wrk(url: str, duration: float, connections: int, headers: list[str]) -> tuple[float, int]:
    """(requests per second, requests) of one wrk run; error responses abort the run."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s"]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True,
                         timeout=duration + 30).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    assert match and count, out
    return float(match.group(1)), int(count.group(1))


def alone(url: str, headers: list[str], n: int) -> float | None:
    """Median ``Server-Timing: total`` (ms) of ``n`` sequential requests on one connection."""
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    path = "/" + parts[3]
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    hdrs = dict(h.split(": ", 1) for h in headers)
    totals = []
    try:
        for _ in range(n):
            conn.request("GET", path, headers=hdrs)
            response = conn.getresponse()
            response.read()
            timing = response.getheader("Server-Timing") or ""
            found = re.search(r"total;dur=([\d.]+)", timing)
            if found:
                totals.append(float(found.group(1)))
    finally:
        conn.close()
    return statistics.median(totals) if totals else None


def stage_env(stage: str, workdir: Path, name: str, app_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIGRAM_")}
    env.update({"MINIGRAM_STAGE": stage, "MINIGRAM_DATA_DIR": str(workdir),
                "MINIGRAM_FAULTS": "", "PYTHONPATH": str(app_root)})
    if stage == "2":
        env.update({"MINIGRAM_DATABASE_URL": f"{PG_ADMIN}/{name}", "MINIGRAM_REDIS_URL": REDIS_URL,
                    "MINIGRAM_REDIS_PREFIX": f"{name}:", "MINIGRAM_WORKERS": "2"})
    return env


def cleanup_stage_2(name: str) -> None:
    import redis
    from sqlalchemy import create_engine, text

    admin = create_engine(f"postgresql+psycopg2://{PG_ADMIN.split('//', 1)[1]}/postgres",
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def login(url: str) -> str:
    body = json.dumps({"username": "seed_user_1", "password": "seedpass123"}).encode()
    request = urllib.request.Request(url + "/api/login", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["token"])


def first_photo(url: str, token: str) -> int:
    request = urllib.request.Request(url + "/api/feed?limit=1",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["photos"][0]["id"])


class Row:
    def __init__(self, label: str, url: str, pid: int, workers: int,
                 headers: list[str]) -> None:
        self.label, self.url, self.pid, self.workers, self.headers = (
            label, url, pid, workers, headers)
        self.rates: list[float] = []
        self.cpu: list[float] = []
        self.alone: float | None = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["1", "1.5", "2"],
                        choices=["1", "1.5", "2"])
    parser.add_argument("--endpoints", nargs="+", default=list(ENDPOINTS), choices=ENDPOINTS)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--alone", type=int, default=300,
                        help="Sequential requests for the server time alone (0 to skip)")
    parser.add_argument("--app-root", type=Path, default=ROOT,
                        help="Directory holding the minigram package to serve")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    app_root = args.app_root.resolve()
    print(f"{os.cpu_count()} cores; app from {app_root}; load average at start {loadavg()}",
          flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="minigram-capacity-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg_names: list[str] = []
    rows: list[Row] = []
    ceilings: dict[int, Row] = {}
    try:
        # the framework's ceiling, 1 and 2 workers
        (tmp / "ceiling_app.py").write_text(CEILING_APP)
        for workers in (1, 2):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "ceiling_app:app", "--port", str(port),
                 "--workers", str(workers), "--log-level", "warning", "--no-access-log",
                 "--http", "httptools", "--loop", "uvloop"],
                cwd=tmp, env={**os.environ, "PYTHONPATH": str(tmp)},
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            wait_ready(url + "/ping", proc)
            ceilings[workers] = Row(f"starlette /ping ({workers}w)", url + "/ping", proc.pid,
                                    workers, [])
            rows.append(ceilings[workers])
        for stage in args.stages:
            workdir = tmp / f"stage-{stage}"
            workdir.mkdir()
            name = f"minigram_bench_capacity_{uuid.uuid4().hex[:8]}"
            env = stage_env(stage, workdir, name, app_root)
            if stage == "2":
                pg_names.append(name)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "minigram", "seed", "--users", str(USERS),
                            "--photos", str(PHOTOS)], env=env, check=True, capture_output=True,
                           timeout=900, cwd=tmp)
            print(f"stage {stage}: seeded {USERS} users, {PHOTOS} photos in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            port = free_port()
            log = (workdir / "serve.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "minigram", "serve", "--port",
                                     str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=tmp)
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            wait_ready(url + "/healthz", proc)
            token = login(url)
            photo = first_photo(url, token)
            workers = 2 if stage == "2" else 1
            for endpoint in args.endpoints:
                path, auth = ENDPOINTS[endpoint]
                headers = [f"Authorization: Bearer {token}"] if auth else []
                rows.append(Row(f"stage {stage} {endpoint}", url + path.format(photo=photo),
                                proc.pid, workers,
                                headers))
        for row in rows:  # warm up: caches filled, lazy imports done
            wrk(row.url, 1, args.connections, row.headers)
        if args.alone:
            for row in rows:
                row.alone = alone(row.url, row.headers, args.alone)
        before = loadavg()
        for r in range(args.repeats):
            order = rows[r % len(rows):] + rows[: r % len(rows)]
            for row in order:
                used = cpu_seconds(row.pid)
                rate, count = wrk(row.url, args.duration, args.connections, row.headers)
                row.rates.append(rate)
                row.cpu.append((cpu_seconds(row.pid) - used) / count * 1e6)
            print(f"repeat {r + 1}/{args.repeats} done; load average {loadavg()}", flush=True)
        after = loadavg()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for name in pg_names:
            cleanup_stage_2(name)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nwrk -t1 -c{args.connections} -d{args.duration:g}s, median of {args.repeats} "
          f"(rotated); stage 2 and the 2-worker ceiling run 2 workers; "
          f"load average {before} -> {after}")
    print(f"  {'row':<26} {'req/s':>8} {'/ceiling':>9} {'CPU us/req':>11} {'alone ms':>9}"
          f"   req/s runs")
    for row in rows:
        median = statistics.median(row.rates)
        ceiling = statistics.median(ceilings[row.workers].rates)
        used = statistics.median(row.cpu)
        alone_ms = f"{row.alone:9.2f}" if row.alone is not None else f"{'-':>9}"
        runs = " ".join(f"{x:.0f}" for x in row.rates)
        print(f"  {row.label:<26} {median:8.0f} {median / ceiling:9.2f} {used:11.0f} "
              f"{alone_ms}   {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
