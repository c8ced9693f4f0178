"""What the request-head guard (minigram.http_guard) costs in requests per second.

    apt-get install -y wrk
    .venv/bin/python benchmarks/header_limits.py [--stages 1.5 2] [--repeats 5] [--duration 5]
                                                 [--connections 32] [--no-h11]

For each stage it seeds one database (50 users), starts one ``minigram serve`` per variant on
it (stock uvicorn httptools as before the limits, the guarded httptools that ``serve`` now
runs, and, unless ``--no-h11``, stock and guarded h11) and measures each with ``wrk`` on
``GET /api/users/seed_user_1`` (a cached profile on stages 1.5 and 2) with browser-sized
headers, one thread, keep-alive. The variants take turns within each repeat, in a rotated
order, so a noisy neighbour hits them alike; the figures are medians over repeats: requests
per second, and the server's CPU time per request (its processes' user + system time over
the run, divided by the requests: less at the mercy of neighbours than the rate). Prints a
table per stage with the load average before and after. Stage 2 uses PostgreSQL at
MINIGRAM_PG_URL's server (default postgresql://postgres@127.0.0.1:5432) in a database of its
own, dropped at the end, and Redis under a prefix of its own.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from server_procs import cpu_seconds, wait_ready  # benchmarks/

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "httptools (before)": ("httptools", False),
    "httptools + guard": ("httptools", True),
    "h11": ("h11", False),
    "h11 + guard": ("h11", True),
}
HEADERS = [
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Accept: application/json, text/plain, */*",
    "Accept-Language: en-GB,en;q=0.9",
    "Accept-Encoding: gzip, deflate, br",
    "Referer: http://127.0.0.1/feed",
    "Cookie: session=" + "x" * 120,
]
PG_ADMIN = re.sub(r"(//[^/]*)/.*$", r"\1",
                  os.environ.get("MINIGRAM_PG_URL", "postgresql://postgres@127.0.0.1:5432"))
REDIS_URL = os.environ.get("MINIGRAM_REDIS_URL", "redis://127.0.0.1:6379/0")


def serve_variant(http: str, guarded: bool, argv: list[str]) -> int:
    """``minigram serve``, with uvicorn's own protocol instead of the guarded one if asked."""
    from minigram import cli, http_guard

    if not guarded:
        http_guard.protocol_for = lambda settings: http  # type: ignore[assignment]
    return cli.main(["serve", "--http", http, *argv])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk(url: str, duration: float, connections: int) -> tuple[float, int]:
    """(requests per second, requests) of one wrk run."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s"]
    for header in HEADERS:
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


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def stage_env(stage: str, workdir: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIGRAM_")}
    env.update({"MINIGRAM_STAGE": stage, "MINIGRAM_DATA_DIR": str(workdir),
                "MINIGRAM_FAULTS": "", "PYTHONPATH": str(ROOT)})
    if stage == "2":
        env.update({"MINIGRAM_DATABASE_URL": f"{PG_ADMIN}/{name}", "MINIGRAM_REDIS_URL": REDIS_URL,
                    "MINIGRAM_REDIS_PREFIX": f"{name}:"})
    return env


def cleanup_stage_2(name: str) -> None:
    import redis
    from sqlalchemy import create_engine, text

    from minigram.db import engine_url

    admin = create_engine(engine_url(f"{PG_ADMIN}/postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def measure_stage(stage: str, variants: list[str], args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"minigram-headers-{stage}-"))
    name = f"minigram_bench_headers_{uuid.uuid4().hex[:8]}"
    env = stage_env(stage, workdir, name)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "-m", "minigram", "seed", "--users", "50", "--photos",
                        "50"], env=env, check=True, capture_output=True, timeout=300, cwd=ROOT)
        urls = {}
        for i, variant in enumerate(variants):
            http, guarded = VARIANTS[variant]
            port = free_port()
            log = (workdir / f"serve-{i}.log").open("wb")
            extra = {"MINIGRAM_REDIS_PREFIX": f"{name}:{i}:"} if stage == "2" else {}
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--serve", variant, "--port", str(port)],
                env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            ))
            urls[variant] = f"http://127.0.0.1:{port}"
        for variant, proc in zip(variants, procs, strict=True):
            wait_ready(urls[variant] + "/healthz", proc, timeout=60)
        path = "/api/users/seed_user_1"
        for variant in variants:  # warm up: caches, lazy imports, the JIT-less first calls
            wrk(urls[variant] + path, 1, args.connections)
        before = loadavg()
        rates: dict[str, list[float]] = {v: [] for v in variants}
        cpu: dict[str, list[float]] = {v: [] for v in variants}  # server CPU us per request
        pids = dict(zip(variants, (proc.pid for proc in procs), strict=True))
        for r in range(args.repeats):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for variant in order:
                used = cpu_seconds(pids[variant])
                rate, count = wrk(urls[variant] + path, args.duration, args.connections)
                rates[variant].append(rate)
                cpu[variant].append((cpu_seconds(pids[variant]) - used) / count * 1e6)
        after = loadavg()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if stage == "2":
            cleanup_stage_2(name)
        shutil.rmtree(workdir, ignore_errors=True)
    base = statistics.median(rates[variants[0]])
    workers = " (2 workers)" if stage == "2" else ""
    print(f"\nstage {stage}{workers}: GET {path}, wrk -t1 -c{args.connections} "
          f"-d{args.duration:g}s, median of {args.repeats}; load average {before} -> {after}")
    base_cpu = statistics.median(cpu[variants[0]])
    print(f"  {'variant':<20} {'req/s':>8} {'vs before':>10} {'CPU us/req':>11} "
          f"{'vs before':>10}   req/s runs")
    for variant in variants:
        median = statistics.median(rates[variant])
        used = statistics.median(cpu[variant])
        runs = " ".join(f"{x:.0f}" for x in rates[variant])
        print(f"  {variant:<20} {median:8.0f} {median / base - 1:+10.1%} {used:11.0f} "
              f"{used / base_cpu - 1:+10.1%}   {runs}")


def protocol_cost(http: str, guarded: bool, requests: int) -> float:
    """Microseconds of CPU per keep-alive request through the HTTP protocol alone: the same
    request fed ``requests`` times to one connection, a trivial app, a transport that drops
    what it is given."""
    import asyncio
    import functools

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from minigram.http_guard import IMPLEMENTATIONS, HeadLimits

    async def app(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200,  # type: ignore[operator]
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})  # type: ignore[operator]

    class Transport(asyncio.Transport):
        def write(self, data: bytes) -> None: ...
        def is_closing(self) -> bool:
            return False
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def close(self) -> None: ...
        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
                name, default)

    if guarded:
        cls = functools.partial(IMPLEMENTATIONS[http], limits=HeadLimits(32768, 10.0))
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        cls = HttpToolsProtocol if http == "httptools" else H11Protocol
    config = Config(app, lifespan="off", log_level="warning", access_log=False)
    config.load()
    request = ("GET /api/users/seed_user_1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               + "".join(f"{h}\r\n" for h in HEADERS) + "\r\n").encode()

    async def drive() -> float:
        state = ServerState()
        protocol = cls(config=config, server_state=state, app_state={})
        protocol.connection_made(Transport())
        started = time.process_time()
        for _ in range(requests):
            protocol.data_received(request)
            await asyncio.sleep(0)  # the request's task runs and answers
            await asyncio.sleep(0)
        used = time.process_time() - started
        protocol.connection_lost(None)
        assert state.total_requests == requests, (state.total_requests, requests)
        return used / requests * 1e6

    return asyncio.run(drive())


def measure_protocols(variants: list[str], repeats: int, requests: int = 20_000) -> None:
    costs: dict[str, list[float]] = {v: [] for v in variants}
    before = loadavg()
    for r in range(repeats):
        for variant in variants[r % len(variants):] + variants[: r % len(variants)]:
            costs[variant].append(protocol_cost(*VARIANTS[variant], requests))
    base = statistics.median(costs[variants[0]])
    print(f"\nin process, the protocol alone: CPU us per keep-alive request, median of "
          f"{repeats} x {requests}; load average {before} -> {loadavg()}")
    for variant in variants:
        median = statistics.median(costs[variant])
        runs = " ".join(f"{x:.1f}" for x in costs[variant])
        print(f"  {variant:<20} {median:8.1f} {median / base - 1:+10.1%}   {runs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["1.5", "2"], choices=["1", "1.5", "2"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-h11", action="store_true", help="Only the httptools variants")
    parser.add_argument("--serve", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        http, guarded = VARIANTS[args.serve]
        return serve_variant(http, guarded, ["--port", args.port, "--workers",
                                             "2" if os.environ["MINIGRAM_STAGE"] == "2" else "1"])
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    variants = [v for v in VARIANTS if not (args.no_h11 and v.startswith("h11"))]
    print(f"{os.cpu_count()} cores; load average at start {loadavg()}")
    measure_protocols(variants, args.repeats)
    for stage in args.stages:
        measure_stage(stage, variants, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
