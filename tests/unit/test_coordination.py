"""pytest_minigram.coordination: a real coordinator and real worker clients.

In threads and in subprocesses (tests/unit/coordination_worker.py), on 127.0.0.1 and on
another loopback address (127.0.0.2), with short timeouts so that every failure path is
reached within seconds. Nothing here is mocked below the socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.coordination import (
    CoordinationError,
    CoordinationTimeout,
    Coordinator,
    CoordinatorGone,
    Load,
    LoadFailed,
    ProtocolError,
    Refused,
    SeriesAggregate,
    Timeouts,
    WorkerClient,
    best_offset,
    shifted_clock,
)
from pytest_minigram.coordination import messages as m
from pytest_minigram.coordination.clock import ClockSample
from pytest_minigram.load import Closed, Journey, Result, VirtualUser, merge, run
from pytest_minigram.load.recorder import Recorder
from pytest_minigram.load.testserver import ServerProcess

HERE = Path(__file__).parent
WORKER_SCRIPT = HERE / "coordination_worker.py"
FAST = Timeouts(connect=3.0, join=2.0, barrier=3.0, probe=2.0, start_delay=0.3, start=2.0,
                grace=3.0, heartbeat=0.5, missed=3, io=3.0)
PROCS = dataclasses.replace(FAST, barrier=20.0)  # worker processes take a while to import
HOSTS = ["127.0.0.1", "127.0.0.2"]
TEST = "tests/x.py::test_load"
GENERATOR = {"processes": 1, "cpu_mean": 0.1, "cpu_max": 0.2, "saturated": False,
             "saturated_fraction": 0.0}


# --- helpers --------------------------------------------------------------------------


def fake_run(load: Load, clock: Callable[[], float], *, seconds: int = 3, rps: int = 100,
             seed: int = 0, action: str = "get", errors_every: int = 50) -> Result:
    """What the engine does for a coordinated load, without HTTP: the same Recorder rows."""
    time.sleep(max(0.0, load.start_at - clock()))
    rec = Recorder()
    rec.started = clock()
    load.on_start(rec.started)
    rnd = random.Random(seed)
    for _ in range(seconds):
        for i in range(rps):
            rec.record(action, rnd.uniform(0.001, 0.08), 0.0, i % errors_every == 0)
        load.on_second(rec.delta(rec.tick(2)))
    return rec.result(duration=float(seconds), workload={"model": "closed", "users": 2},
                      labels={"test": TEST}, generator=dict(GENERATOR), interrupted=False)


class Workers:
    """Worker clients in threads; each runs ``body(client)``; results and errors by name."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.errors: dict[str, BaseException] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, body: Callable[[], Any]) -> None:
        def target() -> None:
            try:
                self.results[name] = body()
            except BaseException as exc:  # noqa: BLE001 - examined by the test
                self.errors[name] = exc

        thread = threading.Thread(target=target, name=f"worker-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"still running after {timeout}s: {alive}"


def client_for(coord: Coordinator, name: str, **kwargs: Any) -> WorkerClient:
    return WorkerClient.from_worker_input(coord.worker_input(), name,
                                          timeouts=kwargs.pop("timeouts", FAST), **kwargs)


def one_load(coord: Coordinator, name: str, key: m.LoadKey = (TEST, 0), *,
             clock: Callable[[], float] | None = None, expected: float = 3.0,
             **run_kwargs: Any) -> tuple[Result, Result]:
    """Join, run one fake load, return (partial, merged)."""
    the_clock = clock or time.time
    with client_for(coord, name, clock=clock).connect() as client:
        with client.arrive(key, expected_duration=expected) as load:
            partial = fake_run(load, the_clock, seed=hash(name) % 1000, **run_kwargs)
            return partial, load.finish(partial)


def in_controller_clock(outcome: Any, partials: dict[str, Result]) -> list[Result]:
    out = []
    for name, part in partials.items():
        copy = Result.from_dict(part.to_dict())
        copy.started_at = outcome.offsets[name].to_controller(part.started_at)
        out.append(copy)
    return out


@pytest.fixture(params=HOSTS)
def host(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


def spawn(procs: list[subprocess.Popen[str]], coord: Coordinator, worker: str, *args: str,
          prefix: list[str] | None = None, timeouts: Timeouts = PROCS) -> subprocess.Popen[str]:
    env = {**os.environ, "MINIGRAM_COORD_SECRET": coord.secret.hex()}
    fields = {name: getattr(timeouts, name) for name in Timeouts.__slots__}
    cmd = [*(prefix or []), sys.executable, str(WORKER_SCRIPT), "--address",
           f"{coord.address[0]}:{coord.address[1]}", "--worker", worker, "--timeouts",
           json.dumps(fields), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    procs.append(proc)
    return proc


def events(proc: subprocess.Popen[str], timeout: float = 30.0) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker exited {proc.returncode}: {err[-3000:]}"
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timeout after {timeout}s waiting for {what}"
        time.sleep(0.02)


# --- the pieces -----------------------------------------------------------------------


def test_the_package_does_not_import_pytest() -> None:
    code = ("import sys, pytest_minigram.coordination; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pytest', '_pytest', 'xdist')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_messages_round_trip_and_malformed_ones_are_refused() -> None:
    msgs: list[m.Message] = [
        m.Join("alpha", pid=7, host="h"), m.Welcome(1.0, 3), m.Ping(4), m.Pong(4, 12.5),
        m.Arrive((TEST, 1), 2.5, ["http://127.0.0.1:1/healthz"]),
        m.Start((TEST, 1), 0, 2, 100.25, ["alpha", "beta"], 70.0), m.Started((TEST, 1), 3.0),
        m.Delta((TEST, 1), {"t": 0, "requests": 1}), m.Done((TEST, 1), {"x": 1}),
        m.Error(TEST, "boom"), m.Merged((TEST, 1), {}), m.Failed((TEST, 1), "why", ["beta"]),
        m.Heartbeat(), m.Bye(), m.Refused("no"),
    ]
    for msg in msgs:
        assert m.decode(m.encode(msg)) == msg
    for bad in (b"nope", b"[]", b'{"type": "shout"}', b'{"type": "ping"}',
                b'{"type": "ping", "seq": "1"}', b'{"type": "ping", "seq": 1, "x": 2}',
                b'{"type": "started", "key": ["t"], "at": 1.0}'):
        with pytest.raises(ProtocolError):
            m.decode(bad)


def test_clock_offset_keeps_the_sample_with_the_smallest_round_trip() -> None:
    # the worker is 2 s ahead; the second sample's answer was delayed on the way back
    samples = [ClockSample(10.0, 12.0005, 10.001), ClockSample(11.0, 13.0004, 11.2),
               ClockSample(12.0, 14.00005, 12.0001)]
    best = best_offset(samples)
    assert best.rtt == pytest.approx(0.0001)
    assert best.offset == pytest.approx(2.0, abs=1e-4)
    assert best.to_controller(best.to_worker(5.0)) == pytest.approx(5.0)
    assert shifted_clock(2.0, lambda: 1.0)() == 3.0


def _partials(starts: list[float], seconds: list[int]) -> list[Result]:
    parts = []
    for w, (start, n) in enumerate(zip(starts, seconds, strict=True)):
        rec = Recorder()
        rec.started = start
        rnd = random.Random(w)
        for s in range(n):
            for _ in range(0 if s == 1 and w == 0 else rnd.randint(20, 60)):  # one empty second
                rec.record(f"a{rnd.randint(0, 2)}", rnd.uniform(0.001, 0.3), 0.0,
                           rnd.random() < 0.1)
            rec.tick(rnd.randint(1, 5))
        parts.append(rec.result(duration=float(n), workload={}, labels={},
                                generator=dict(GENERATOR), interrupted=False))
    return parts


@pytest.mark.parametrize("max_open", [32, 2])
def test_streamed_series_equals_merge_of_the_partials(max_open: int) -> None:
    """Seconds arriving interleaved, workers starting up to 1.7 s apart: same rows as merge."""
    parts = _partials([1000.0, 1000.3, 1001.7, 1000.05], [6, 5, 4, 9])
    names = [f"w{i}" for i in range(len(parts))]
    agg = SeriesAggregate(names, max_open=max_open)
    rows = {n: list(p.timeseries) for n, p in zip(names, parts, strict=True)}
    agg.add("w3", rows["w3"].pop(0))  # a delta before every start is known: buffered
    for n, p in zip(names, parts, strict=True):
        agg.started(n, p.started_at)
    rnd = random.Random(5)
    most_open = 0
    while any(rows.values()):
        n = rnd.choice([n for n in names if rows[n]])
        agg.add(n, rows[n].pop(0))
        most_open = max(most_open, agg.open_seconds)
        if not rows[n]:
            agg.finish(n)
    assert agg.rows() == merge(parts).timeseries
    assert most_open <= 12  # bounded by how far apart the workers are, not by their number
    assert sum(r["requests"] for r in agg.rows()) == sum(p.count for p in parts)


def test_series_lead_is_how_far_a_worker_is_ahead_of_the_slowest() -> None:
    agg = SeriesAggregate(["a", "b"])
    row = {"requests": 1, "errors": 0, "users": 1, "histogram": None}
    agg.add("a", {**row, "t": 0})
    assert agg.lead("a") == 1 and agg.lead("b") == 0  # before the starts: rows buffered
    agg.started("a", 10.0)
    agg.started("b", 10.0)
    for t in range(1, 20):
        agg.add("a", {**row, "t": t})
    assert agg.lead("a") == 20 and agg.open_seconds == 20
    agg.add("b", {**row, "t": 0})
    assert agg.lead("a") == 19 and agg.open_seconds == 19  # second 0 is final
    agg.finish("b")
    assert agg.lead("a") == 0 and agg.open_seconds == 0


def test_the_engine_streams_its_time_series_row_by_row() -> None:
    deltas: list[dict[str, Any]] = []
    starts: list[float] = []

    async def iteration(user: VirtualUser) -> None:
        await user.get("/d?delay_ms=2", name="fast")
        await user.get("/d?delay_ms=4", name="slow")

    with ServerProcess() as srv:
        result = run(Closed(users=2, duration=2.3), Journey("j", iteration), srv.url,
                     on_start=starts.append, on_second=deltas.append)
    assert starts == [result.started_at]
    assert [{k: v for k, v in d.items() if k not in ("actions", "live")}
            for d in deltas] == result.timeseries
    assert len(deltas) == 3  # two whole seconds and the last partial one
    for d in deltas:
        assert sum(a["count"] for a in d["actions"].values()) == d["requests"]
    for name in ("fast", "slow"):
        assert sum(d["actions"][name]["count"] for d in deltas) == result.actions[name].count


# --- coordinated loads in threads -----------------------------------------------------


def test_named_workers_get_one_exact_merge(host: str) -> None:
    with Coordinator(host, workers=["alpha", "beta"], timeouts=FAST) as coord:
        assert coord.address[0] == host
        workers = Workers()
        for name in ("alpha", "beta"):
            workers.start(name, lambda name=name: one_load(coord, name))
        workers.join()
        assert not workers.errors, workers.errors
        outcome = coord.wait_load((TEST, 0), 5)
        assert outcome.ok and outcome.participants == ("alpha", "beta")
        partials = {n: workers.results[n][0] for n in ("alpha", "beta")}
        merged = outcome.result
        assert merged is not None
        assert merged.count == sum(p.count for p in partials.values()) == 600
        assert merged.total.errors == sum(p.total.errors for p in partials.values())
        assert merged.timeseries == merge(in_controller_clock(outcome, partials)).timeseries
        reference = merge(in_controller_clock(outcome, partials)).to_dict()
        for key in ("total", "actions", "iterations", "errors"):
            assert merged.to_dict()[key] == reference[key]
        # every worker judges the same numbers
        assert (workers.results["alpha"][1].to_dict() == workers.results["beta"][1].to_dict()
                == merged.to_dict())
        info = merged.generator["coordination"]
        assert set(info["workers"]) == {"alpha", "beta"}
        assert info["start_spread"] == outcome.start_spread < 0.05
        test_outcome = coord.outcome(TEST)
        assert test_outcome is not None and not test_outcome.failed


def test_a_coordinator_on_127_0_0_2_is_not_reachable_on_127_0_0_1() -> None:
    with Coordinator("127.0.0.2", timeouts=FAST) as coord:
        with pytest.raises(CoordinatorGone, match="could not connect"):
            WorkerClient(("127.0.0.1", coord.address[1]), coord.secret, "alpha",
                         timeouts=FAST).connect()
        with client_for(coord, "alpha").connect():
            wait_until(lambda: "alpha" in coord.workers(), 3, "alpha to join")


def test_two_load_calls_of_one_test_are_separate_rendezvous(host: str) -> None:
    """A stress ladder: the second merge holds only the second call's requests."""
    def ladder(name: str) -> list[tuple[Result, Result]]:
        out = []
        with client_for(coord, name).connect() as client:
            for call, (action, rps) in enumerate((("step1", 50), ("step2", 120))):
                with client.arrive((TEST, call), expected_duration=2.0) as load:
                    part = fake_run(load, time.time, seconds=2, rps=rps, action=action)
                    out.append((part, load.finish(part)))
        return out

    with Coordinator(host, workers=["alpha", "beta"], timeouts=FAST) as coord:
        workers = Workers()
        for name in ("alpha", "beta"):
            workers.start(name, lambda name=name: ladder(name))
        workers.join()
        assert not workers.errors, workers.errors
        first, second = coord.wait_load((TEST, 0), 5), coord.wait_load((TEST, 1), 5)
        assert first.result is not None and second.result is not None
        assert set(first.result.actions) == {"step1"} and first.result.count == 2 * 2 * 50
        assert set(second.result.actions) == {"step2"} and second.result.count == 2 * 2 * 120
        assert sum(r["requests"] for r in second.result.timeseries) == 2 * 2 * 120
        for name in ("alpha", "beta"):
            assert workers.results[name][1][1].count == 480
        outcome = coord.pop_outcome(TEST)
        assert outcome is not None and [lo.key for lo in outcome.loads] == [(TEST, 0), (TEST, 1)]


def test_an_error_on_a_non_first_worker_fails_the_load_for_all(host: str) -> None:
    def failing(name: str) -> None:
        with client_for(coord, name).connect() as client:
            with client.arrive((TEST, 0), expected_duration=3.0) as load:
                fake_run(load, time.time, seconds=1)
                raise RuntimeError("the journey blew up")

    with Coordinator(host, workers=["alpha", "beta", "gamma"], timeouts=FAST) as coord:
        workers = Workers()
        workers.start("alpha", lambda: one_load(coord, "alpha"))
        workers.start("beta", lambda: one_load(coord, "beta"))
        workers.start("gamma", lambda: failing("gamma"))
        workers.join()
        assert isinstance(workers.errors["gamma"], RuntimeError)
        for name in ("alpha", "beta"):
            exc = workers.errors[name]
            assert isinstance(exc, LoadFailed), exc
            assert exc.workers == ("gamma",) and "the journey blew up" in exc.reason
            assert "worker gamma" in exc.reason
        outcome = coord.outcome(TEST)
        assert outcome is not None and outcome.failed and "worker gamma" in outcome.reason


def test_a_setup_error_elsewhere_fails_waiting_workers_at_once() -> None:
    with Coordinator(workers=["alpha", "beta"], timeouts=FAST) as coord:
        with client_for(coord, "alpha").connect() as alpha, \
                client_for(coord, "beta").connect() as beta:
            workers = Workers()
            started = time.monotonic()
            workers.start("alpha", lambda: alpha.arrive((TEST, 0), expected_duration=2))
            time.sleep(0.3)
            beta.fail(TEST, "setup error: fixture 'db' raised ConnectionRefusedError")
            workers.join()
            exc = workers.errors["alpha"]
            assert isinstance(exc, LoadFailed) and exc.workers == ("beta",)
            assert "setup error" in exc.reason
            assert time.monotonic() - started < FAST.barrier  # not the barrier timeout
            # a later arrival at the same test fails too
            with pytest.raises(LoadFailed, match="worker beta"):
                alpha.arrive((TEST, 1), expected_duration=2)


def test_a_worker_with_its_clock_2s_ahead_starts_with_the_others(host: str) -> None:
    """In threads, so one real clock is common to all: the start instants really agree."""
    real_starts: dict[str, float] = {}

    def skewed(name: str, shift: float) -> tuple[Result, Result]:
        clock = shifted_clock(shift)
        with client_for(coord, name, clock=clock).connect() as client:
            with client.arrive((TEST, 0), expected_duration=3.0) as load:
                time.sleep(max(0.0, load.start_at - clock()))
                real_starts[name] = time.time()
                part = fake_run(load, clock, seed=len(name))
                return part, load.finish(part)

    with Coordinator(host, workers=["alpha", "beta", "skewed"], timeouts=FAST) as coord:
        workers = Workers()
        for name, shift in (("alpha", 0.0), ("beta", 0.0), ("skewed", 2.0)):
            workers.start(name, lambda name=name, shift=shift: skewed(name, shift))
        workers.join()
        assert not workers.errors, workers.errors
        outcome = coord.wait_load((TEST, 0), 5)
        assert outcome.offsets["skewed"].offset == pytest.approx(2.0, abs=0.005)
        assert outcome.offsets["alpha"].offset == pytest.approx(0.0, abs=0.005)
        assert max(real_starts.values()) - min(real_starts.values()) < 0.05
        assert outcome.start_spread is not None and outcome.start_spread < 0.05
        result = outcome.result
        assert result is not None and len(result.timeseries) == 3  # aligned, not 5 rows
        partials = {n: workers.results[n][0] for n in ("alpha", "beta", "skewed")}
        assert result.timeseries == merge(in_controller_clock(outcome, partials)).timeseries
        assert abs(result.started_at - min(real_starts.values())) < 0.05


def test_a_wrong_secret_is_refused() -> None:
    with Coordinator(workers=["alpha"], timeouts=FAST) as coord:
        wrong = WorkerClient(coord.address, b"not the secret", "alpha", timeouts=FAST)
        with pytest.raises(Refused, match="refused this worker's secret"):
            wrong.connect()
        wait_until(lambda: bool(coord.refused), 3, "the refusal to be recorded")
        assert "wrong secret" in coord.refused[0]
        assert "alpha" not in coord.workers()
        _, merged = one_load(coord, "alpha")  # the right secret still works
        assert merged.count == 300


def test_a_worker_the_controller_does_not_expect_fails_the_load() -> None:
    with Coordinator(workers=["alpha"], timeouts=FAST) as coord:
        with client_for(coord, "mallory").connect() as client:
            with pytest.raises(LoadFailed, match="worker mallory .* not one of the workers"):
                client.arrive((TEST, 0))


def test_a_second_connection_with_a_connected_id_is_refused() -> None:
    with Coordinator(workers=["alpha"], timeouts=FAST) as coord:
        with client_for(coord, "alpha").connect():
            with pytest.raises(Refused, match="already connected"):
                client_for(coord, "alpha").connect()


def test_health_watch_ends_the_load_when_the_server_dies() -> None:
    status = {"code": 200}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    try:
        with Coordinator(workers=["alpha"], timeouts=FAST, health_interval=0.1,
                         health_timeout=1.0) as coord:
            with client_for(coord, "alpha").connect() as client:
                load = client.arrive((TEST, 0), expected_duration=10, health_urls=[url])
                time.sleep(max(0.0, load.start_at - time.time()))
                load.on_start(time.time())
                time.sleep(0.5)
                assert not load.stop.is_set()  # healthy so far
                status["code"] = 503
                died = time.monotonic()
                assert load.stop.wait(3), "the load was not stopped"
                assert time.monotonic() - died < 1.5
                with pytest.raises(LoadFailed, match="server died: .*/healthz.*HTTP 503"):
                    load.finish(Result())
    finally:
        server.shutdown()
        server.server_close()


# --- every wait times out, naming who was waited for ----------------------------------


def test_barrier_timeout_names_the_missing_worker() -> None:
    with Coordinator(workers=["alpha", "late"], timeouts=FAST) as coord:
        with client_for(coord, "alpha").connect() as client:
            started = time.monotonic()
            with pytest.raises(LoadFailed, match=r"timeout after 3s waiting for worker\(s\) late"):
                client.arrive((TEST, 0))
            assert FAST.barrier <= time.monotonic() - started < FAST.barrier + 1.5


def test_start_and_done_timeouts_name_the_worker() -> None:
    def never_starts() -> None:
        with client_for(coord, "beta").connect() as client:
            load = client.arrive((TEST, 0), expected_duration=1.0)
            assert load.stop.wait(10)  # told to stop when the verdict came
            time.sleep(0.2)

    with Coordinator(workers=["alpha", "beta"], timeouts=FAST) as coord:
        workers = Workers()
        workers.start("alpha", lambda: one_load(coord, "alpha"))
        workers.start("beta", never_starts)
        workers.join()
        exc = workers.errors["alpha"]
        assert isinstance(exc, LoadFailed) and exc.workers == ("beta",)
        assert "did not start" in exc.reason

    def never_finishes() -> None:
        with client_for(coord, "beta").connect() as client:
            with client.arrive((TEST, 1), expected_duration=0.5) as load:
                fake_run(load, time.time, seconds=1)
                assert load.stop.wait(15)
                load.fail("stopped")

    with Coordinator(workers=["alpha", "beta"], timeouts=FAST) as coord:
        workers = Workers()
        workers.start("alpha", lambda: one_load(coord, "alpha", (TEST, 1), seconds=1,
                                                expected=0.5))
        workers.start("beta", never_finishes)
        workers.join()
        exc = workers.errors["alpha"]
        assert isinstance(exc, LoadFailed) and exc.workers == ("beta",)
        assert "did not finish" in exc.reason


def test_a_connection_that_never_joins_or_stalls_in_the_handshake_is_dropped() -> None:
    with Coordinator(workers=["alpha"], timeouts=FAST) as coord:
        stalled = socket.create_connection(coord.address)  # sends nothing at all
        silent = Client(coord.address, family="AF_INET", authkey=coord.secret)  # no join
        try:
            with client_for(coord, "alpha").connect():  # not blocked by either
                pass
            wait_until(lambda: any("no join message" in r for r in coord.refused),
                       FAST.join + 2, "the silent connection to be dropped")
            with pytest.raises(EOFError):
                silent.recv_bytes()
        finally:
            stalled.close()
            silent.close()


@contextlib.contextmanager
def fake_coordinator(script: Callable[[Any], None]) -> Iterator[tuple[tuple[str, int], bytes]]:
    """A bare Listener speaking the protocol as ``script(conn)`` says (after the welcome)."""
    secret = b"s" * 32
    listener = Listener(("127.0.0.1", 0), family="AF_INET", authkey=secret)
    stop = threading.Event()

    def serve() -> None:
        conn = listener.accept()
        m.decode(conn.recv_bytes())  # join
        conn.send_bytes(m.encode(m.Welcome(FAST.heartbeat, FAST.missed)))
        try:
            script(conn)
            stop.wait(30)
        except (OSError, EOFError):
            pass  # the worker left
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.address, secret
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_worker_notices_a_coordinator_that_falls_silent() -> None:
    with fake_coordinator(lambda conn: None) as (address, secret):
        client = WorkerClient(address, secret, "alpha", timeouts=FAST).connect()
        started = time.monotonic()
        with pytest.raises(CoordinatorGone, match="fell silent"):
            client.arrive((TEST, 0))
        assert time.monotonic() - started < FAST.silence + 1.0
        client.close()


def test_a_worker_waits_for_the_merged_result_only_so_long() -> None:
    def starts_then_only_heartbeats(conn: Any) -> None:
        arrive = m.decode(conn.recv_bytes())
        assert isinstance(arrive, m.Arrive)
        conn.send_bytes(m.encode(m.Start(arrive.key, 0, 1, time.time(), ["alpha"], 0.5)))
        for _ in range(40):
            conn.send_bytes(m.encode(m.Heartbeat()))
            time.sleep(0.25)

    with fake_coordinator(starts_then_only_heartbeats) as (address, secret):
        with WorkerClient(address, secret, "alpha", timeouts=FAST).connect() as client:
            load = client.arrive((TEST, 0))
            with pytest.raises(CoordinationTimeout, match="merged result"):
                load.finish(Result(), timeout=1.0)


def test_a_worker_connecting_to_a_silent_port_times_out() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never authenticates
    try:
        started = time.monotonic()
        with pytest.raises(CoordinationTimeout, match="timeout after 1s connecting"):
            WorkerClient(server.getsockname(), b"x", "alpha",
                         timeouts=Timeouts(connect=1.0)).connect()
        assert time.monotonic() - started < 2.0
    finally:
        server.close()


# --- worker processes -----------------------------------------------------------------


def test_subprocess_workers_with_a_2s_skew_start_together_and_align(
        procs: list[subprocess.Popen[str]]) -> None:
    """The real engine in three processes, one with its wall clock 2 s ahead."""
    names = ("alpha", "beta", "skewed")
    with ServerProcess() as srv, Coordinator(workers=names, timeouts=PROCS) as coord:
        for name in names:
            spawn(procs, coord, name, "--mode", "engine", "--target", srv.url, "--seconds", "2",
                  "--users", "2", *(["--shift", "2.0"] if name == "skewed" else []))
        runs = {name: events(proc) for name, proc in zip(names, procs, strict=True)}
        outcome = coord.wait_load((TEST, 0), 5)
    assert outcome.ok, outcome.reason
    real = {n: next(e["real"] for e in ev if e["event"] == "started") for n, ev in runs.items()}
    assert max(real.values()) - min(real.values()) < 0.05  # one host: one true clock
    assert outcome.offsets["skewed"].offset == pytest.approx(2.0, abs=0.01)
    assert outcome.start_spread is not None and outcome.start_spread < 0.05
    partials = {n: Result.from_dict(next(e["partial"] for e in ev if e["event"] == "merged"))
                for n, ev in runs.items()}
    assert partials["skewed"].started_at - real["skewed"] == pytest.approx(2.0, abs=0.01)
    assert outcome.result is not None
    assert outcome.result.count == sum(p.count for p in partials.values()) > 0
    assert outcome.result.timeseries == merge(in_controller_clock(outcome, partials)).timeseries
    assert len(outcome.result.timeseries) == max(len(p.timeseries) for p in partials.values())
    merged_dicts = [next(e["merged"] for e in ev if e["event"] == "merged")
                    for ev in runs.values()]
    assert all(d == merged_dicts[0] for d in merged_dicts)


def _running(coord: Coordinator, key: m.LoadKey, n: int) -> None:
    wait_until(lambda: len(coord.live_loads().get(key, {}).get("started", [])) == n, 20,
               f"{n} workers to start load {key}")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_worker_process_lost_mid_load_fails_it_naming_the_worker(
        procs: list[subprocess.Popen[str]], how: str) -> None:
    """SIGKILL closes its connection; SIGSTOP only silences it (3 missed heartbeats)."""
    with Coordinator(workers=["alpha", "beta"], timeouts=PROCS) as coord:
        alpha = spawn(procs, coord, "alpha", "--seconds", "20", "--real-time", "--rps", "50")
        beta = spawn(procs, coord, "beta", "--seconds", "20", "--real-time", "--rps", "50")
        _running(coord, (TEST, 0), 2)
        time.sleep(1.2)  # a delta or so in
        lost = time.monotonic()
        os.kill(beta.pid, getattr(signal, how))
        outcome = coord.wait_load((TEST, 0), 10)
        elapsed = time.monotonic() - lost
        alpha_events = events(alpha)
    assert not outcome.ok and outcome.workers == ("beta",)
    assert "worker beta is gone" in outcome.reason
    if how == "SIGKILL":
        assert "connection closed" in outcome.reason
        assert elapsed < 1.0
    else:
        assert "missed 3 heartbeats" in outcome.reason
        # silent since its last message, up to one heartbeat before the signal
        assert FAST.silence - FAST.heartbeat - 0.1 < elapsed < FAST.silence + 1.0
    failed = [e for e in alpha_events if e["event"] == "failed"]
    assert failed and failed[0]["workers"] == ["beta"], alpha_events


def test_a_worker_in_its_own_pid_namespace_and_tmp_still_coordinates(
        procs: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    """As a remote worker: no pid, no /tmp in common with the controller; only the network."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run([unshare, "--mount", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"unshare cannot create namespaces here: {probe.stderr.decode()[-300:]}")
    marker = f"/tmp/minigram-isolated-{os.getpid()}"
    with Coordinator(workers=["alpha", "isolated"], timeouts=PROCS) as coord:
        host_worker = spawn(procs, coord, "alpha")
        env_secret = coord.secret.hex()
        fields = {name: getattr(PROCS, name) for name in Timeouts.__slots__}
        inner = (f"mount -t tmpfs tmpfs /tmp && exec {sys.executable} {WORKER_SCRIPT} "
                 f"--address {coord.address[0]}:{coord.address[1]} --worker isolated "
                 f"--touch {marker} --timeouts '{json.dumps(fields)}'")
        isolated = subprocess.Popen(
            [unshare, "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c", inner],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MINIGRAM_COORD_SECRET": env_secret})
        procs.append(isolated)
        isolated_events = events(isolated)
        events(host_worker)
        outcome = coord.wait_load((TEST, 0), 5)
        info = coord.workers()["isolated"]
    assert outcome.ok, outcome.reason
    assert info.pid == 1  # its own pid namespace: pid 1 there, meaningless here
    joined = next(e for e in isolated_events if e["event"] == "joined")
    assert joined["pid"] == 1
    assert not os.path.exists(marker)  # it wrote its /tmp, which is not ours
    merged = next(e for e in isolated_events if e["event"] == "merged")
    assert merged["merged"]["total"]["count"] == outcome.result.count  # type: ignore[union-attr]


def test_collections_and_provided_values_travel_over_the_connection() -> None:
    """What xdist workers tell the controller after collection, and what the controller
    starts once for all of them (provided on the first ask, in a thread of its own)."""
    calls: list[str] = []

    def provide(name: str) -> dict[str, str]:
        calls.append(name)
        if name == "broken":
            raise RuntimeError("no such service")
        time.sleep(0.2)  # a server starting
        return {"url": f"http://127.0.0.1:1/{name}"}

    with Coordinator(workers=("alpha", "beta"), provide=provide) as coord:
        clients = [WorkerClient.from_worker_input(coord.worker_input(), w).connect()
                   for w in ("alpha", "beta")]
        try:
            clients[0].collected(["t.py::test_a", "t.py::test_b"])
            clients[1].collected(["t.py::test_a", "t.py::test_b"])
            assert coord.wait_collected(("alpha", "beta"), timeout=5) == {
                "alpha": ["t.py::test_a", "t.py::test_b"],
                "beta": ["t.py::test_a", "t.py::test_b"]}
            answers: list[object] = []
            threads = [threading.Thread(target=lambda c=c: answers.append(c.ask("stage:2")))
                       for c in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            assert answers == [{"url": "http://127.0.0.1:1/stage:2"}] * 2
            assert calls == ["stage:2"]  # started once for both workers
            with pytest.raises(CoordinationError, match="could not provide 'broken'.*no such"):
                clients[0].ask("broken")
        finally:
            for client in clients:
                client.close()
        with pytest.raises(CoordinationTimeout, match="gamma"):
            coord.expect("gamma")
            coord.wait_collected(("alpha", "gamma"), timeout=0.5)
