"""The controller side: one :class:`Coordinator` per session, owning every load's lifecycle.

Threads: a few accept (and authenticate) connections; one *loop* thread does everything
else, so all protocol state changes and all closes happen in one place: it reads the
workers' messages, measures their clocks, starts loads, folds deltas, merges and enforces
every deadline. A *heart* thread sends the heartbeats, so that a long merge in the loop does
not make the workers think the controller is gone. A :class:`~.health.HealthWatch` thread per
load polls
the servers' health URLs. Public methods only read state under the lock or queue a command
for the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from pytest_minigram.coordination import messages as m
from pytest_minigram.coordination.clock import Clock, ClockOffset, ClockSample, best_offset
from pytest_minigram.coordination.errors import (
    CoordinationError,
    CoordinationTimeout,
    ProtocolError,
    Timeouts,
)
from pytest_minigram.coordination.health import HealthWatch
from pytest_minigram.coordination.messages import LoadKey, format_key
from pytest_minigram.coordination.series import SeriesAggregate
from pytest_minigram.coordination.transport import (
    MAX_MESSAGE,
    Address,
    format_address,
    listen,
    new_secret,
    set_io_timeout,
)
from pytest_minigram.load.result import Result, merge

__all__ = [
    "WORKERINPUT_ADDRESS",
    "WORKERINPUT_SECRET",
    "Coordinator",
    "LoadObserver",
    "LoadOutcome",
    "PerfTestOutcome",
    "WorkerFailure",
    "WorkerInfo",
]

WORKERINPUT_ADDRESS = "minigram_coordinator"
WORKERINPUT_SECRET = "minigram_coordinator_secret"
_TICK = 0.05  # the loop's housekeeping period (deadlines, heartbeats), seconds
_BURST = 16  # messages read from one connection before serving the others
# Listener.accept() authenticates in the accepting thread; with several, one connection that
# stalls in the handshake (until the io timeout) does not hold up the others.
_ACCEPTORS = 4
# Flow control: a worker this many seconds ahead of the slowest one of its load is not read
# from (TCP holds it back) until the others catch up; bounds the open seconds of the series.
_MAX_LEAD = 16


class LoadObserver(Protocol):
    """What a live view learns of the loads, called in the coordinator's loop thread (under its
    lock): each method must be quick and must not raise."""

    def load_started(self, key: LoadKey, info: dict[str, Any], participants: tuple[str, ...],
                     expected_duration: float | None, start_at: float) -> None:
        """The load got its common start (``start_at``, controller clock); ``info`` is what
        the first worker sent in arrive."""

    def load_second(self, key: LoadKey, row: dict[str, Any], extra: dict[str, Any]) -> None:
        """A merged second became final (see `SeriesAggregate.take_new`)."""

    def load_finished(self, key: LoadKey, ok: bool, reason: str, stopped: bool) -> None:
        """The load has its verdict (``stopped``: ended early from the live page)."""


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """A worker said a test (or one of its loads) failed or errored on it."""

    worker: str
    message: str
    key: LoadKey | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    worker: str
    address: str  # where its connection comes from
    host: str  # what it says its host name is
    pid: int  # informational only; may be a pid of another machine or namespace
    connected: bool
    gone: str | None  # why it is no longer connected


@dataclass(frozen=True)
class LoadOutcome:
    """The controller's verdict on one load call, and the merged result when it passed.

    Times are in the controller's clock. ``offsets[w]`` is worker ``w``'s clock minus the
    controller's; ``started[w]`` when ``w`` really started; ``start_spread`` the latest start
    minus the earliest.
    """

    key: LoadKey
    participants: tuple[str, ...]
    ok: bool
    reason: str = ""
    workers: tuple[str, ...] = ()  # the workers that caused a failure
    result: Result | None = None
    offsets: dict[str, ClockOffset] = field(default_factory=dict)
    start_at: float | None = None
    started: dict[str, float] = field(default_factory=dict)
    start_spread: float | None = None
    action_series: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PerfTestOutcome:
    """Everything the controller knows about one perf test: its loads and worker failures."""

    test: str
    loads: list[LoadOutcome] = field(default_factory=list)
    failures: list[WorkerFailure] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures) or any(not load.ok for load in self.loads)

    @property
    def reason(self) -> str:
        """Why it failed, naming the workers; empty when it did not."""
        parts = [f"worker {f.worker}: {f.message}" for f in self.failures]
        parts += [o.reason for o in self.loads if not o.ok and o.reason not in parts]
        return "; ".join(dict.fromkeys(parts))


class _Pending:
    __slots__ = ("address", "conn", "since")

    def __init__(self, conn: Connection, address: str) -> None:
        self.conn = conn
        self.address = address
        self.since = time.monotonic()


class _Probe:
    __slots__ = ("key", "samples", "sent", "sent_mono", "seq")

    def __init__(self, key: LoadKey) -> None:
        self.key = key
        self.samples: list[ClockSample] = []
        self.seq = 0
        self.sent = 0.0
        self.sent_mono = 0.0


class _Peer:
    __slots__ = ("address", "broken", "conn", "gone", "host", "last_seen", "last_sent", "pid",
                 "probe", "send_lock", "worker")

    def __init__(self, worker: str, conn: Connection, address: str, join: m.Join) -> None:
        self.worker = worker
        self.conn: Connection | None = conn
        self.address = address
        self.host = join.host
        self.pid = join.pid
        self.last_seen = self.last_sent = time.monotonic()
        self.gone: str | None = None
        self.probe: _Probe | None = None
        self.send_lock = threading.Lock()  # the loop and the heart thread both send
        self.broken: str | None = None  # a send of the heart thread failed; the loop drops it


class _Load:
    def __init__(self, key: LoadKey, participants: tuple[str, ...]) -> None:
        self.key = key
        self.participants = participants
        self.created = time.monotonic()
        self.running = False
        self.finished = False
        self.arrivals: dict[str, m.Arrive] = {}
        self.offsets: dict[str, ClockOffset] = {}
        self.start_at: float | None = None
        self.started: dict[str, float] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self.series = SeriesAggregate(participants)
        self.started_by = 0.0  # monotonic deadlines once running
        self.done_by = 0.0
        self.health: HealthWatch | None = None
        self.stopped = ""  # why it was stopped early (the live page), when it was

    def spread(self) -> float | None:
        if len(self.started) < len(self.participants):
            return None
        return max(self.started.values()) - min(self.started.values())


class Coordinator:
    """The session's coordinator; see the package docstring for the call sequence.

    ``host``/``port``: where to listen (``127.0.0.1`` by default; an address of this machine
    that the workers can reach, or ``0.0.0.0``, for workers on other machines). ``secret``:
    the per-session key the workers must prove they have (random by default). ``workers``:
    the ids expected to take part in loads (more with :meth:`expect`). ``clock``: the
    controller's wall clock (``time.time``). ``clock_samples``: round trips per clock
    measurement. ``health_*``: how :class:`~.health.HealthWatch` polls the health URLs that
    workers give for a load.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, secret: bytes | None = None,
                 workers: Iterable[str] = (), timeouts: Timeouts | None = None,
                 clock: Clock | None = None, clock_samples: int = 8,
                 health_interval: float = 0.5, health_timeout: float = 2.0,
                 health_failures: int = 2,
                 provide: Callable[[str], Any] | None = None,
                 keep_results: bool = True, observer: LoadObserver | None = None) -> None:
        self.host = host
        self.observer = observer  # a live view of the loads (see LoadObserver)
        self.provide = provide  # answers ``ask``: once a name, in the provider thread
        # keep each finished load's merged Result (for wait_load); a session of many perf
        # tests sends it to the workers and keeps only the verdict
        self.keep_results = keep_results
        self.port = port
        self.secret = secret if secret is not None else new_secret()
        self.timeouts = timeouts or Timeouts()
        self._clock = clock
        self.clock_samples = max(1, clock_samples)
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.health_failures = health_failures
        self.refused: list[str] = []  # connections refused, and why (for diagnostics)
        self._roster: dict[str, None] = dict.fromkeys(workers)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._peers: dict[str, _Peer] = {}
        self._owners: dict[Connection, _Peer | _Pending] = {}
        self._loads: dict[LoadKey, _Load] = {}
        self._finished: dict[LoadKey, LoadOutcome] = {}
        self._tests: dict[str, PerfTestOutcome] = {}
        self._commands: list[Callable[[], None]] = []
        self._collected: dict[str, list[str]] = {}
        self._provided: dict[str, tuple[Any, str]] = {}
        self._asks: dict[str, list[tuple[_Peer, int]]] = {}
        self._to_provide: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._provider: threading.Thread | None = None
        self._seq = itertools.count(1)
        self._closing = threading.Event()
        self._crashed: str | None = None
        self._address: Address | None = None
        self._listener: Any = None
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> Coordinator:
        from multiprocessing import Pipe

        if self._listener is not None:
            raise RuntimeError("the coordinator is already started")
        self._listener = listen(self.host, self.port, self.secret, self.timeouts.io)
        addr = self._listener.address
        self._address = (str(addr[0]), int(addr[1]))
        self._wake_r, self._wake_w = Pipe(duplex=False)
        self._threads = [
            threading.Thread(target=self._accept_loop, name=f"minigram-coord-accept-{i}",
                             daemon=True) for i in range(_ACCEPTORS)
        ] + [threading.Thread(target=self._heart, name="minigram-coord-heart", daemon=True),
             threading.Thread(target=self._main_loop, name="minigram-coord", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Fail the loads still running (their workers are told), disconnect, stop."""
        if self._listener is None or self._closing.is_set():
            return
        self._closing.set()
        self._wake()
        raw = getattr(getattr(self._listener, "_listener", None), "_socket", None)
        if isinstance(raw, socket.socket):
            with contextlib.suppress(OSError):  # wakes the accept() call
                raw.shutdown(socket.SHUT_RDWR)
        for thread in reversed(self._threads):
            thread.join(timeout)
        self._listener.close()

    def __enter__(self) -> Coordinator:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- what the controller asks --------------------------------------------------------
    @property
    def address(self) -> Address:
        if self._address is None:
            raise RuntimeError("the coordinator is not started")
        return self._address

    def worker_input(self, host: str | None = None) -> dict[str, str]:
        """What a worker needs to join, as plain strings (for xdist's ``workerinput``).

        ``host``: the address the workers should connect to, when it is not the one the
        coordinator listens on (which is required when that is ``0.0.0.0``).
        """
        bound, port = self.address
        host = host or bound
        if host == "0.0.0.0":
            raise RuntimeError("listening on 0.0.0.0: give the workers an address of this "
                               "machine they can reach, worker_input(host=...)")
        return {WORKERINPUT_ADDRESS: format_address((host, port)),
                WORKERINPUT_SECRET: self.secret.hex()}

    def collected(self) -> dict[str, list[str]]:
        """The perf tests each worker reported after its collection, by worker."""
        with self._lock:
            return {w: list(ids) for w, ids in self._collected.items()}

    def wait_collected(self, workers: Iterable[str], timeout: float) -> dict[str, list[str]]:
        """Wait until every one of ``workers`` has reported its collection (or is gone)."""
        wanted = set(workers)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = [w for w in wanted if w not in self._collected and w in self._peers]
                unjoined = [w for w in wanted if w not in self._collected
                            and w not in self._peers]
                if not missing and not unjoined:
                    return {w: list(ids) for w, ids in self._collected.items()}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    late = ", ".join(sorted(missing + unjoined))
                    raise CoordinationTimeout(f"timeout after {timeout:g}s: worker(s) {late} "
                                              "reported no collection to the coordinator")
                self._changed.wait(min(remaining, 0.25))

    def expect(self, *workers: str) -> None:
        """These workers take part in the loads that start from now on (in this order)."""
        with self._lock:
            for worker in workers:
                self._roster[worker] = None

    def forget(self, *workers: str) -> None:
        """These workers take part in no more loads; loads they are in now fail."""
        with self._lock:
            for worker in workers:
                self._roster.pop(worker, None)
        self._command(lambda: self._forget(workers))

    def fail_load(self, key: LoadKey, reason: str) -> None:
        """End a running load for all its workers with this verdict (e.g. a server died)."""
        self._command(lambda: self._fail_key(key, reason, ()))

    def fail_test(self, test: str, reason: str) -> None:
        """Fail a perf test from the controller: its running and future loads fail."""
        self._command(lambda: self._test_failure(test, WorkerFailure("controller", reason)))

    def stop_test(self, test: str, reason: str) -> None:
        """End the running loads of ``test`` cleanly: every worker stops its users and sends
        its partial result, which is merged as usual; the observer hears ``stopped``."""
        self._command(lambda: self._stop_test(test, reason))

    def _stop_test(self, test: str, reason: str) -> None:
        for load in [ld for ld in self._loads.values() if ld.key[0] == test and ld.running]:
            if load.stopped:
                continue
            load.stopped = reason
            data = m.encode(m.Stop(load.key, reason))
            for worker in load.participants:
                peer = self._peers.get(worker)
                if peer is not None:
                    self._send(peer, data)

    def outcome(self, test: str) -> PerfTestOutcome | None:
        with self._lock:
            out = self._tests.get(test)
            if out is None:
                return None
            return PerfTestOutcome(out.test, list(out.loads), list(out.failures))

    def pop_outcome(self, test: str) -> PerfTestOutcome | None:
        """The outcome of a finished test, forgotten by the coordinator (frees its results)."""
        with self._lock:
            out = self._tests.pop(test, None)
            for load in out.loads if out is not None else ():
                self._finished[load.key] = LoadOutcome(load.key, load.participants, load.ok,
                                                       load.reason, load.workers)
            return out

    def wait_load(self, key: LoadKey, timeout: float) -> LoadOutcome:
        """Wait until the load ``key`` has a verdict."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                done = self._finished.get(key)
                if done is not None:
                    return done
                if self._crashed is not None:
                    raise CoordinationError(f"the coordinator loop crashed: {self._crashed}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CoordinationTimeout(f"timeout after {timeout:g}s waiting for the "
                                              f"verdict of load {format_key(key)}")
                self._changed.wait(min(remaining, 0.5))

    def live_loads(self) -> dict[LoadKey, dict[str, list[str]]]:
        """Loads without a verdict yet: which workers ``arrived``, ``started``, are ``done``."""
        with self._lock:
            return {key: {"participants": list(load.participants),
                          "arrived": list(load.arrivals), "started": list(load.started),
                          "done": [w for w in load.participants if w in load.done]}
                    for key, load in self._loads.items()}

    def workers(self) -> dict[str, WorkerInfo]:
        with self._lock:
            return {w: WorkerInfo(w, p.address, p.host, p.pid, p.conn is not None, p.gone)
                    for w, p in self._peers.items()}

    # --- threads -------------------------------------------------------------------------
    def _clock_now(self) -> float:
        return (self._clock or time.time)()

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                self._wake_w.send_bytes(b"")
            except OSError:
                pass

    def _command(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(fn)
        self._wake()

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._closing.is_set():
            before = listener.last_accepted
            try:
                conn = listener.accept()
            except (AuthenticationError, EOFError, OSError) as exc:
                if self._closing.is_set():
                    return
                # BlockingIOError is also what accept() raises when idle for the io timeout;
                # the address is a best effort (other acceptor threads may have moved it)
                if not isinstance(exc, BlockingIOError) or listener.last_accepted is not before:
                    where = format_address(listener.last_accepted or ("?", 0))
                    why = ("wrong secret" if isinstance(exc, AuthenticationError)
                           else "handshake failed")
                    with self._lock:
                        self.refused.append(f"{where}: {why} ({type(exc).__name__}: {exc})")
                continue
            set_io_timeout(conn, self.timeouts.io)
            where = format_address(listener.last_accepted)
            with self._lock:
                if self._closing.is_set():
                    conn.close()
                    return
                self._owners[conn] = _Pending(conn, where)
            self._wake()

    def _heart(self) -> None:
        """Heartbeats to every connected worker, without the coordinator's lock."""
        beat = m.encode(m.Heartbeat())
        period = self.timeouts.heartbeat
        while not self._closing.wait(min(period / 4, _TICK * 4)):
            for peer in list(self._peers.values()):  # atomic under the GIL
                conn = peer.conn
                if conn is None or time.monotonic() - peer.last_sent < period:
                    continue
                if not peer.send_lock.acquire(blocking=False):
                    continue  # a message is being sent to it right now
                try:
                    if peer.conn is conn:
                        conn.send_bytes(beat)
                        peer.last_sent = time.monotonic()
                except OSError as exc:
                    peer.broken = f"sending to it failed ({type(exc).__name__}: {exc})"
                    self._wake()
                finally:
                    peer.send_lock.release()

    def _main_loop(self) -> None:
        assert self._wake_r is not None
        try:
            while not self._closing.is_set():
                with self._lock:
                    watch: list[Connection] = [self._wake_r, *self._readable()]
                try:
                    ready = wait(watch, timeout=_TICK)
                except (OSError, ValueError):
                    ready = []
                with self._lock:
                    for conn in ready:
                        if conn is self._wake_r:
                            while self._wake_r.poll():
                                self._wake_r.recv_bytes()
                            continue
                        if isinstance(conn, Connection) and conn in self._owners:
                            self._read(conn, self._owners[conn])
                    commands, self._commands = self._commands, []
                    for command in commands:
                        command()
                    self._housekeeping()
        except BaseException as exc:  # noqa: BLE001 - a bug must not leave workers waiting
            with self._lock:
                self._crashed = "".join(traceback.format_exception_only(exc)).strip()
        finally:
            with self._lock:
                reason = ("the coordinator stopped" if self._crashed is None
                          else f"the coordinator crashed: {self._crashed}")
                for load in list(self._loads.values()):
                    self._fail(load, reason, ())
                for owner in list(self._owners.values()):
                    if isinstance(owner, _Peer):
                        self._drop(owner, reason)
                    else:
                        owner.conn.close()
                self._owners.clear()
                self._changed.notify_all()

    # --- reading -------------------------------------------------------------------------
    def _readable(self) -> list[Connection]:
        """The connections to read from now: all but those of workers far ahead."""
        ahead = {w for load in self._loads.values() if load.running
                 for w in load.participants if load.series.lead(w) > _MAX_LEAD}
        return [conn for conn, owner in self._owners.items()
                if not (isinstance(owner, _Peer) and owner.worker in ahead)]

    def _read(self, conn: Connection, owner: _Peer | _Pending) -> None:
        for _ in range(_BURST):
            try:
                data = conn.recv_bytes(MAX_MESSAGE)
            except (EOFError, OSError) as exc:
                why = ("connection closed" if isinstance(exc, EOFError)
                       else f"connection lost ({type(exc).__name__}: {exc})")
                self._disconnect(owner, why)
                return
            try:
                msg = m.decode(data)
            except ProtocolError as exc:
                self._disconnect(owner, f"protocol error: {exc}")
                return
            if isinstance(owner, _Pending):
                self._on_join(owner, msg)
                return
            owner.last_seen = time.monotonic()
            try:
                self._handle(owner, msg)
            except Exception as exc:  # noqa: BLE001 - fail its loads, keep serving the others
                text = "".join(traceback.format_exception_only(exc)).strip()
                self._fail_peer_loads(owner, f"coordinator error on a {msg.TYPE} message from "
                                             f"worker {owner.worker}: {text}")
            if owner.conn is None or not conn.poll(0):
                return
            if isinstance(msg, m.Delta) and (load := self._loads.get(msg.key)) is not None \
                    and load.series.lead(owner.worker) > _MAX_LEAD:
                return  # flow control, see _readable

    def _disconnect(self, owner: _Peer | _Pending, why: str) -> None:
        if isinstance(owner, _Pending):
            self._owners.pop(owner.conn, None)
            owner.conn.close()
            self.refused.append(f"{owner.address}: {why} before joining")
        else:
            self._drop(owner, why)

    def _on_join(self, pending: _Pending, msg: m.Message) -> None:
        conn = pending.conn
        self._owners.pop(conn, None)
        reason = ""
        if not isinstance(msg, m.Join):
            reason = f"the first message must be join, not {msg.TYPE}"
        elif msg.protocol != m.PROTOCOL:
            reason = f"protocol {msg.protocol}, this coordinator speaks {m.PROTOCOL}"
        elif not msg.worker or len(msg.worker) > 200:
            reason = "a worker id must be 1 to 200 characters"
        else:
            old = self._peers.get(msg.worker)
            if old is not None and old.conn is not None:
                reason = f"worker {msg.worker} is already connected (from {old.address})"
        if reason or not isinstance(msg, m.Join):
            self.refused.append(f"{pending.address}: {reason}")
            try:
                conn.send_bytes(m.encode(m.Refused(reason)))
            except OSError:
                pass
            conn.close()
            return
        peer = _Peer(msg.worker, conn, pending.address, msg)
        self._peers[msg.worker] = peer
        self._owners[conn] = peer
        self._send(peer, m.encode(m.Welcome(self.timeouts.heartbeat, self.timeouts.missed)))

    def _handle(self, peer: _Peer, msg: m.Message) -> None:
        if isinstance(msg, m.Heartbeat):
            return
        if isinstance(msg, m.Pong):
            self._on_pong(peer, msg)
        elif isinstance(msg, m.Arrive):
            self._on_arrive(peer, msg)
        elif isinstance(msg, m.Started | m.Delta | m.Done):
            self._on_load_message(peer, msg)
        elif isinstance(msg, m.Error):
            self._test_failure(msg.test, WorkerFailure(peer.worker, msg.message, msg.key))
        elif isinstance(msg, m.Collected):
            with self._changed:
                self._collected[peer.worker] = list(msg.perf)
                self._changed.notify_all()
        elif isinstance(msg, m.Ask):
            self._on_ask(peer, msg)
        elif isinstance(msg, m.Bye):
            self._drop(peer, "left")
        else:
            self._drop(peer, f"protocol error: workers do not send {msg.TYPE} messages")

    def _on_ask(self, peer: _Peer, msg: m.Ask) -> None:
        """Answer from what was provided, or queue the name for the provider thread."""
        with self._lock:
            done = self._provided.get(msg.name)
            if done is None:
                self._asks.setdefault(msg.name, []).append((peer, msg.seq))
                if len(self._asks[msg.name]) == 1:
                    self._to_provide.put(msg.name)
                if self._provider is None:
                    self._provider = threading.Thread(target=self._provide_loop,
                                                      name="minigram-coord-provide",
                                                      daemon=True)
                    self._provider.start()
                return
        self._send(peer, m.encode(m.Answer(msg.seq, msg.name, *done)))

    def _provide_loop(self) -> None:
        """One long-lived thread provides every name, in turn: a server started here has
        this thread as its parent for as long as the session runs (PR_SET_PDEATHSIG is tied
        to the thread that started a process, so a short-lived thread would take it down)."""
        while not self._closing.is_set():
            try:
                name = self._to_provide.get(timeout=0.25)
            except queue.Empty:
                continue
            try:
                if self.provide is None:
                    raise LookupError("this controller provides nothing")
                result: tuple[Any, str] = (self.provide(name), "")
            except BaseException as exc:  # noqa: BLE001 - pytest.fail/skip too: tell the workers
                result = (None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self._provided[name] = result
                waiting = self._asks.pop(name, [])

            def answer(waiting: list[tuple[_Peer, int]] = waiting, name: str = name,
                       result: tuple[Any, str] = result) -> None:
                for peer, seq in waiting:
                    self._send(peer, m.encode(m.Answer(seq, name, *result)))

            self._command(answer)

    # --- a load's lifecycle --------------------------------------------------------------
    def _on_arrive(self, peer: _Peer, msg: m.Arrive) -> None:
        key, worker = msg.key, peer.worker
        done = self._finished.get(key)
        if done is not None:
            reason = done.reason if not done.ok else (
                f"load {format_key(key)} already finished; worker {worker} arrived too late")
            self._send(peer, m.encode(m.Failed(key, reason, list(done.workers or (worker,)))))
            return
        load = self._loads.get(key)
        if load is None:
            participants = tuple(w for w in self._roster
                                 if w not in self._peers or self._peers[w].conn is not None)
            if worker not in participants:  # fails below, naming it
                participants += (worker,)
            load = self._loads[key] = _Load(key, participants)
            test = self._tests.get(key[0])
            if test is not None and test.failures:
                first = test.failures[0]
                self._fail(load, f"worker {first.worker}: {first.message}", (first.worker,))
                return
        if worker not in load.participants or worker not in self._roster:
            expected = ", ".join(w for w in load.participants if w in self._roster) or "none"
            self._fail(load, f"worker {worker} arrived at load {format_key(key)} but is not one "
                             f"of the workers the controller expects ({expected}; see "
                             "Coordinator.expect)", (worker,))
            return
        if worker in load.arrivals or load.running:
            self._fail(load, f"worker {worker} arrived twice at load {format_key(key)}",
                       (worker,))
            return
        load.arrivals[worker] = msg
        peer.probe = _Probe(key)
        self._ping(peer)

    def _ping(self, peer: _Peer) -> None:
        probe = peer.probe
        assert probe is not None
        probe.seq = next(self._seq)
        probe.sent_mono = time.monotonic()
        probe.sent = self._clock_now()
        self._send(peer, m.encode(m.Ping(probe.seq)))

    def _on_pong(self, peer: _Peer, msg: m.Pong) -> None:
        received = self._clock_now()
        probe = peer.probe
        if probe is None or msg.seq != probe.seq:
            return  # an answer to a probe given up on
        probe.samples.append(ClockSample(probe.sent, msg.clock, received))
        if len(probe.samples) < self.clock_samples:
            self._ping(peer)
            return
        peer.probe = None
        load = self._loads.get(probe.key)
        if load is None:
            return
        load.offsets[peer.worker] = best_offset(probe.samples)
        if len(load.offsets) == len(load.participants):
            self._start(load)

    def _start(self, load: _Load) -> None:
        t = self.timeouts
        now, mono = self._clock_now(), time.monotonic()
        load.running = True
        load.start_at = now + t.start_delay
        given = [a.expected_duration for a in load.arrivals.values()
                 if a.expected_duration is not None]
        expected = max(given) if given else t.default_duration
        load.started_by = mono + t.start_delay + t.start
        load.done_by = mono + t.start_delay + expected + t.grace
        done_within = t.start_delay + expected + t.grace
        count = len(load.participants)
        for index, worker in enumerate(load.participants):
            start_at = load.offsets[worker].to_worker(load.start_at)
            self._send(self._peers[worker], m.encode(m.Start(
                load.key, index, count, start_at, list(load.participants), done_within)))
            if load.finished:
                return
        if self.observer is not None:
            first = load.arrivals.get(load.participants[0])
            self.observer.load_started(load.key, dict(first.info) if first else {},
                                       load.participants, expected, load.start_at)
        urls = [u for a in load.arrivals.values() for u in a.health_urls]
        if urls:
            key = load.key

            def died(reason: str) -> None:
                self._command(lambda: self._fail_key(key, reason, ()))

            load.health = HealthWatch(urls, died, interval=self.health_interval,
                                      timeout=self.health_timeout,
                                      failures=self.health_failures).start()

    def _on_load_message(self, peer: _Peer, msg: m.Started | m.Delta | m.Done) -> None:
        worker = peer.worker
        load = self._loads.get(msg.key)
        if load is None:
            if msg.key in self._finished:
                return  # in flight when the verdict was given
            raise ProtocolError(f"worker {worker} sent {msg.TYPE} for load "
                                f"{format_key(msg.key)}, which it never arrived at")
        if not load.running or worker not in load.participants:
            self._fail(load, f"worker {worker} sent {msg.TYPE} for load {format_key(load.key)} "
                             "before it started", (worker,))
            return
        try:
            if isinstance(msg, m.Started):
                if worker in load.started:
                    raise ValueError("it reported its start twice")
                at = load.offsets[worker].to_controller(msg.at)
                load.started[worker] = at
                load.series.started(worker, at)
            elif isinstance(msg, m.Delta):
                load.series.add(worker, msg.row)
            else:
                self._on_done(load, worker, msg.result)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._fail(load, f"worker {worker} sent a bad {msg.TYPE} for load "
                             f"{format_key(load.key)}: {exc}", (worker,))
        self._observe_seconds(load)

    def _observe_seconds(self, load: _Load) -> None:
        new = load.series.take_new()
        if self.observer is not None:
            for row, extra in new:
                self.observer.load_second(load.key, row, extra)

    def _on_done(self, load: _Load, worker: str, result: dict[str, Any]) -> None:
        if worker in load.done:
            raise ValueError("it reported done twice")
        if worker not in load.started:
            raise ValueError("done before started")
        total = result["total"]
        streamed = load.series.streamed[worker]
        if total["count"] != streamed["requests"] or total["errors"] != streamed["errors"]:
            raise ValueError(f"its result counts {total['count']} requests and "
                             f"{total['errors']} errors, its per-second deltas "
                             f"{streamed['requests']} and {streamed['errors']}")
        load.done[worker] = result
        load.series.finish(worker)
        if len(load.done) == len(load.participants):
            self._merge(load)

    def _merge(self, load: _Load) -> None:
        parts: list[Result] = []
        for worker in load.participants:
            try:
                part = Result.from_dict(load.done.pop(worker))
            except (ValueError, TypeError, KeyError) as exc:
                self._fail(load, f"worker {worker} sent a result that does not parse: {exc}",
                           (worker,))
                return
            part.started_at = load.offsets[worker].to_controller(part.started_at)
            part.timeseries = []
            parts.append(part)
        try:
            merged = merge(parts)
        except ValueError as exc:
            self._fail(load, f"cannot merge the results of load {format_key(load.key)}: {exc}",
                       ())
            return
        merged.timeseries = load.series.rows()
        self._observe_seconds(load)
        expected = sum(p.count for p in parts)
        if merged.count != expected:  # merge() adds exactly; this guards the guarantee
            self._fail(load, f"merged {merged.count} requests, the workers sent {expected}", ())
            return
        spread = load.spread()
        merged.generator["coordination"] = {
            "start_at": load.start_at,
            "start_spread": spread,
            "workers": {w: {"clock_offset": load.offsets[w].offset,
                            "clock_rtt": load.offsets[w].rtt,
                            "started": load.started[w],
                            "requests": p.count}
                        for w, p in zip(load.participants, parts, strict=True)},
        }
        outcome = LoadOutcome(load.key, load.participants, True, result=merged,
                              offsets=dict(load.offsets), start_at=load.start_at,
                              started=dict(load.started), start_spread=spread,
                              action_series=load.series.action_rows())
        self._finish(load, outcome)
        data = m.encode(m.Merged(load.key, merged.to_dict(), load.stopped))
        for worker in load.participants:
            peer = self._peers.get(worker)
            if peer is not None:
                self._send(peer, data)

    # --- failing -------------------------------------------------------------------------
    def _fail(self, load: _Load, reason: str, workers: tuple[str, ...]) -> None:
        if load.finished:
            return
        outcome = LoadOutcome(load.key, load.participants, False, reason, workers,
                              offsets=dict(load.offsets), start_at=load.start_at,
                              started=dict(load.started), start_spread=load.spread())
        self._finish(load, outcome)
        data = m.encode(m.Failed(load.key, reason, list(workers)))
        for worker in load.participants:
            peer = self._peers.get(worker)
            if peer is not None and peer.conn is not None:
                self._send(peer, data)

    def _finish(self, load: _Load, outcome: LoadOutcome) -> None:
        load.finished = True
        if self.observer is not None and load.running:
            self.observer.load_finished(load.key, outcome.ok, outcome.reason, bool(load.stopped))
        if load.health is not None:
            load.health.stop()
        self._loads.pop(load.key, None)
        if not self.keep_results:
            outcome = dataclasses.replace(outcome, result=None, action_series=[])
        self._finished[load.key] = outcome
        test = self._tests.setdefault(load.key[0], PerfTestOutcome(load.key[0]))
        test.loads.append(outcome)
        self._changed.notify_all()

    def _fail_key(self, key: LoadKey, reason: str, workers: tuple[str, ...]) -> None:
        load = self._loads.get(key)
        if load is not None:
            self._fail(load, reason, workers)

    def _test_failure(self, test: str, failure: WorkerFailure) -> None:
        self._tests.setdefault(test, PerfTestOutcome(test)).failures.append(failure)
        for load in [ld for ld in self._loads.values() if ld.key[0] == test]:
            self._fail(load, f"worker {failure.worker}: {failure.message}", (failure.worker,))

    def _fail_peer_loads(self, peer: _Peer, reason: str) -> None:
        for load in [ld for ld in self._loads.values() if peer.worker in ld.participants]:
            self._fail(load, reason, (peer.worker,))

    def _forget(self, workers: Iterable[str]) -> None:
        for worker in workers:
            for load in [ld for ld in self._loads.values() if worker in ld.participants]:
                self._fail(load, f"worker {worker} was removed by the controller", (worker,))

    def _drop(self, peer: _Peer, why: str) -> None:
        if peer.conn is not None:
            self._owners.pop(peer.conn, None)
            with peer.send_lock:
                peer.conn.close()
                peer.conn = None
        peer.gone = why
        peer.probe = None
        self._fail_peer_loads(peer, f"worker {peer.worker} is gone: {why}")

    def _send(self, peer: _Peer, data: bytes) -> None:
        conn = peer.conn
        if conn is None:
            return
        error: OSError | None = None
        with peer.send_lock:
            try:
                conn.send_bytes(data)
            except OSError as exc:
                error = exc
        if error is not None:
            self._drop(peer, f"sending to it failed ({type(error).__name__}: {error})")
            return
        peer.last_sent = time.monotonic()

    # --- deadlines and heartbeats --------------------------------------------------------
    def _housekeeping(self) -> None:
        t = self.timeouts
        now = time.monotonic()
        for owner in list(self._owners.values()):
            if isinstance(owner, _Pending) and now - owner.since > t.join:
                self._disconnect(owner, f"no join message within {t.join:g}s")
        for peer in list(self._peers.values()):
            if peer.conn is None:
                continue
            if peer.broken is not None:
                self._drop(peer, peer.broken)
                continue
            silent = now - peer.last_seen
            if silent > t.silence and not peer.conn.poll(0):
                self._drop(peer, f"missed {t.missed} heartbeats (nothing received for "
                                 f"{silent:.1f}s)")
                continue
            probe = peer.probe
            if probe is not None and now - probe.sent_mono > t.probe:
                peer.probe = None
                self._fail_key(probe.key, f"worker {peer.worker} did not answer a clock probe "
                                          f"within {t.probe:g}s", (peer.worker,))
        for load in list(self._loads.values()):
            name = format_key(load.key)
            if not load.running:
                if now - load.created > t.barrier:
                    late = [w for w in load.participants if w not in load.arrivals]
                    self._fail(load, f"timeout after {t.barrier:g}s waiting for worker(s) "
                                     f"{', '.join(late)} to arrive at load {name}", tuple(late))
            elif len(load.started) < len(load.participants) and now > load.started_by:
                late = [w for w in load.participants if w not in load.started]
                self._fail(load, f"timeout: worker(s) {', '.join(late)} did not start load "
                                 f"{name} within {t.start:g}s of the start instant", tuple(late))
            elif now > load.done_by:
                late = [w for w in load.participants if w not in load.done]
                self._fail(load, f"timeout: worker(s) {', '.join(late)} did not finish load "
                                 f"{name} within its expected duration + {t.grace:g}s",
                           tuple(late))
