"""The worker side: a :class:`WorkerClient` per worker process, a :class:`Load` per load call.

Threads: a receiver answers clock probes at once and hands ``start``/``merged``/``failed`` to
the waiting :class:`Load`; a sender writes everything else in order (the engine's callbacks
only queue, they never block on the network) and a heartbeat whenever it had nothing to send
for a heartbeat period. Both notice a lost coordinator (connection closed, or nothing heard
for ``heartbeat * missed`` seconds); every wait then ends with :class:`CoordinatorGone`.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_minigram.coordination import messages as m
from pytest_minigram.coordination.clock import Clock
from pytest_minigram.coordination.coordinator import WORKERINPUT_ADDRESS, WORKERINPUT_SECRET
from pytest_minigram.coordination.errors import (
    CoordinationError,
    CoordinationTimeout,
    CoordinatorGone,
    LoadFailed,
    ProtocolError,
    Refused,
    Timeouts,
)
from pytest_minigram.coordination.messages import LoadKey, format_key
from pytest_minigram.coordination.transport import (
    MAX_MESSAGE,
    Address,
    connect,
    format_address,
    parse_address,
)
from pytest_minigram.load.result import Result

__all__ = ["Load", "WorkerClient"]

_MARGIN = 30.0  # how much longer a worker waits than the coordinator's own deadline


class Load:
    """One load call of one perf test on this worker, from its start to its verdict.

    Pass :attr:`start_at`, :attr:`stop`, :meth:`on_start` and :meth:`on_second` to the engine's
    ``run``, then hand its partial result to :meth:`finish`. Used as a context manager, an
    exception in the block (or leaving it without :meth:`finish`) fails the load for all.
    """

    def __init__(self, client: WorkerClient, key: LoadKey) -> None:
        self.client = client
        self.key = key
        self.stop = threading.Event()  # set when the verdict is failed: end the run early
        self._start: m.Start | None = None
        self._started_mono = 0.0
        self._merged: m.Merged | None = None
        self._failed: m.Failed | None = None
        self._stopped: m.Stop | None = None
        self._finished = False

    # --- the share, once started ---------------------------------------------------------
    @property
    def index(self) -> int:
        """This worker's share of the load: ``workload.split(count)[index]``."""
        return self._started().index

    @property
    def count(self) -> int:
        return self._started().count

    @property
    def start_at(self) -> float:
        """The common start instant, in this worker's clock (for ``run(start_at=...)``)."""
        return self._started().start_at

    @property
    def participants(self) -> list[str]:
        return list(self._started().participants)

    def _started(self) -> m.Start:
        if self._start is None:
            raise RuntimeError(f"load {format_key(self.key)} has not started")
        return self._start

    # --- the engine's callbacks (never raise, never block) -------------------------------
    def on_start(self, at: float) -> None:
        """The engine really started at ``at`` (this worker's clock)."""
        self.client._post(m.Started(self.key, float(at)))

    def on_second(self, row: Mapping[str, Any]) -> None:
        """One second of the run: a ``Result.timeseries`` row (with optional ``actions``)."""
        self.client._post(m.Delta(self.key, dict(row)))

    # --- the verdict ---------------------------------------------------------------------
    def finish(self, result: Result, timeout: float | None = None) -> Result:
        """Send this worker's partial result; return the merged result of all workers.

        Raises :class:`LoadFailed` when the verdict is failed (for any worker's reason).
        """
        if self._finished:
            raise RuntimeError(f"load {format_key(self.key)} is already finished")
        self._finished = True
        start = self._started()
        if self._failed is None:
            partial = result.to_dict()
            partial["timeseries"] = []  # the coordinator built it from the deltas
            self.client._post(m.Done(self.key, partial))
        if timeout is None:
            timeout = self._started_mono + start.done_within + _MARGIN - time.monotonic()
        try:
            msg = self.client._wait(self, lambda: self._failed or self._merged, timeout,
                                    f"the merged result of load {format_key(self.key)}")
        finally:
            self.client._release(self)
        if isinstance(msg, m.Failed):
            raise LoadFailed(msg.reason, tuple(msg.workers))
        assert isinstance(msg, m.Merged)
        return Result.from_dict(msg.result)

    def fail(self, message: str) -> None:
        """This load failed here (e.g. the engine raised): it fails for every worker."""
        self._finished = True
        self.client._post(m.Error(self.key[0], message, self.key))

    @property
    def stopped(self) -> str | None:
        """Why the controller stopped this load early (from the live page), or None; once
        merged, what the controller says for every worker."""
        if self._merged is not None:
            return self._merged.stopped or None
        return None if self._stopped is None else self._stopped.reason

    @property
    def failed(self) -> str | None:
        """The reason, once the coordinator's verdict is failed."""
        return None if self._failed is None else self._failed.reason

    def __enter__(self) -> Load:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: object) -> None:
        if self._finished:
            return
        if ev is not None and not isinstance(ev, CoordinationError):
            self.fail(f"{type(ev).__name__}: {ev}")
        elif ev is None:
            self.fail("the load call ended without reporting its result")


class WorkerClient:
    """One worker's connection to the coordinator (see the package docstring).

    ``clock``: this worker's wall clock, the one ``run(start_at=...)`` uses (``time.time``);
    tests pass a shifted clock (``clock.shifted_clock(2.0)``) to simulate a skewed machine.
    """

    def __init__(self, address: str | Address, secret: bytes | str, worker: str, *,
                 clock: Clock | None = None, timeouts: Timeouts | None = None) -> None:
        self.address = parse_address(address)
        self.secret = bytes.fromhex(secret) if isinstance(secret, str) else secret
        self.worker = worker
        self.timeouts = timeouts or Timeouts()
        self._clock = clock
        self._conn: Any = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._loads: dict[LoadKey, Load] = {}
        self._answers: dict[int, m.Answer] = {}
        self._asked = 0
        self._gone: str | None = None
        self._closing = False
        self._last_seen = time.monotonic()
        self._heartbeat = self.timeouts.heartbeat
        self._silence = self.timeouts.silence
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_worker_input(cls, workerinput: Mapping[str, Any], worker: str | None = None, *,
                          clock: Clock | None = None,
                          timeouts: Timeouts | None = None) -> WorkerClient:
        """From what ``Coordinator.worker_input()`` put in xdist's ``workerinput``."""
        return cls(workerinput[WORKERINPUT_ADDRESS], str(workerinput[WORKERINPUT_SECRET]),
                   worker or str(workerinput["workerid"]), clock=clock, timeouts=timeouts)

    @property
    def where(self) -> str:
        return format_address(self.address)

    def clock(self) -> float:
        return (self._clock or time.time)()

    # --- lifecycle -----------------------------------------------------------------------
    def connect(self) -> WorkerClient:
        """Connect, authenticate and join; raises Refused, CoordinationTimeout, ..Gone."""
        t = self.timeouts
        conn = connect(self.address, self.secret, t.connect, t.io)
        try:
            conn.send_bytes(m.encode(m.Join(self.worker, m.PROTOCOL, os.getpid(),
                                            socket.gethostname())))
            if not conn.poll(t.connect):
                raise CoordinationTimeout(f"timeout after {t.connect:g}s waiting for the "
                                          f"coordinator at {self.where} to welcome worker "
                                          f"{self.worker}")
            reply = m.decode(conn.recv_bytes(MAX_MESSAGE))
        except (EOFError, OSError) as exc:
            conn.close()
            raise CoordinatorGone(f"the coordinator at {self.where} closed the connection "
                                  f"while worker {self.worker} joined ({exc!r})") from None
        except BaseException:
            conn.close()
            raise
        if isinstance(reply, m.Refused):
            conn.close()
            raise Refused(f"the coordinator at {self.where} refused worker {self.worker}: "
                          f"{reply.reason}")
        if not isinstance(reply, m.Welcome):
            conn.close()
            raise ProtocolError(f"expected welcome, got {reply.TYPE}")
        self._heartbeat = reply.heartbeat  # the controller's figures win
        self._silence = reply.heartbeat * reply.missed
        self._conn = conn
        self._last_seen = time.monotonic()
        self._threads = [
            threading.Thread(target=self._receive, name="minigram-worker-recv", daemon=True),
            threading.Thread(target=self._send_loop, name="minigram-worker-send", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Leave (the coordinator fails any load this worker is still in) and disconnect."""
        if self._conn is None or self._closing:
            return
        self._closing = True
        self._outbox.put(m.encode(m.Bye()))
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._conn.close()
        with self._cond:
            self._gone = self._gone or "this worker closed its connection"
            self._cond.notify_all()

    def __enter__(self) -> WorkerClient:
        return self.connect() if self._conn is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- what the plugin calls -----------------------------------------------------------
    def arrive(self, key: LoadKey, *, expected_duration: float | None = None,
               health_urls: Sequence[str] = (), timeout: float | None = None,
               info: Mapping[str, Any] | None = None) -> Load:
        """Meet the other workers at load call ``key``; return when the start is fixed.

        ``expected_duration``: the planned run time (the coordinator's deadline for the
        results is that plus a grace period); ``health_urls``: URLs the controller polls
        during the load (``GET`` must answer below 500). Raises :class:`LoadFailed` when the
        load fails before it starts (a worker missing, erroring, gone...).
        """
        key = (str(key[0]), int(key[1]))
        load = Load(self, key)
        with self._cond:
            if key in self._loads:
                raise ProtocolError(f"worker {self.worker} already arrived at load "
                                    f"{format_key(key)}")
            self._loads[key] = load
        self._post(m.Arrive(key, expected_duration, list(health_urls), dict(info or {})))
        if timeout is None:
            timeout = self.timeouts.barrier + self.timeouts.probe + _MARGIN
        try:
            msg = self._wait(load, lambda: load._failed or load._start, timeout,
                             f"the start of load {format_key(key)}")
        except BaseException:
            self._release(load)
            raise
        if isinstance(msg, m.Failed):
            load._finished = True
            self._release(load)
            raise LoadFailed(msg.reason, tuple(msg.workers))
        return load

    def fail(self, test: str, message: str) -> None:
        """The perf test failed or errored on this worker (setup, assertion, timeout...)."""
        self._post(m.Error(test, message))

    def collected(self, perf: Sequence[str]) -> None:
        """Tell the controller which perf tests this worker collected."""
        self._post(m.Collected(list(perf)))

    def ask(self, name: str, timeout: float = 600.0) -> Any:
        """What the controller provides under ``name`` (it starts it on the first ask)."""
        with self._cond:
            self._asked += 1
            seq = self._asked
        self._post(m.Ask(seq, name))
        deadline = time.monotonic() + timeout
        with self._cond:
            while seq not in self._answers:
                if self._gone is not None:
                    raise CoordinatorGone(f"worker {self.worker} lost the coordinator at "
                                          f"{self.where} while asking for {name!r}: "
                                          f"{self._gone}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CoordinationTimeout(f"timeout after {timeout:g}s: the coordinator "
                                              f"at {self.where} provided no {name!r}")
                self._cond.wait(min(remaining, 0.25))
            reply = self._answers.pop(seq)
        if reply.error:
            raise CoordinationError(f"the controller could not provide {name!r}: "
                                    f"{reply.error}")
        return reply.value

    # --- internals -----------------------------------------------------------------------
    def _post(self, msg: m.Message) -> None:
        if self._conn is not None and not self._closing:
            self._outbox.put(m.encode(msg))

    def _wait(self, load: Load, ready: Any, timeout: float, what: str) -> m.Message:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                msg = ready()
                if msg is not None:
                    return msg  # type: ignore[no-any-return]
                if self._gone is not None:
                    raise CoordinatorGone(f"worker {self.worker} lost the coordinator at "
                                          f"{self.where} while waiting for {what}: "
                                          f"{self._gone}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CoordinationTimeout(f"timeout after {timeout:.1f}s: worker "
                                              f"{self.worker} got no answer from the "
                                              f"coordinator at {self.where} about {what}")
                self._cond.wait(min(remaining, 0.25))

    def _release(self, load: Load) -> None:
        with self._cond:
            if self._loads.get(load.key) is load:
                del self._loads[load.key]

    def _lost(self, why: str) -> None:
        with self._cond:
            if self._gone is None:
                self._gone = why
            for load in self._loads.values():
                load.stop.set()
            self._cond.notify_all()

    def _send_now(self, data: bytes) -> None:
        with self._send_lock:
            self._conn.send_bytes(data)

    def _send_loop(self) -> None:
        heartbeat = m.encode(m.Heartbeat())
        period = self._heartbeat
        while True:
            try:
                item = self._outbox.get(timeout=period)
            except queue.Empty:
                item = heartbeat
            if item is None:
                return
            try:
                self._send_now(item)
            except OSError as exc:
                self._lost(f"sending failed ({type(exc).__name__}: {exc})")
                return

    def _receive(self) -> None:
        conn = self._conn
        while not self._closing:
            try:
                if not conn.poll(0.2):
                    silent = time.monotonic() - self._last_seen
                    if silent > self._silence:
                        self._lost(f"the coordinator fell silent (nothing for {silent:.1f}s, "
                                   "missed its heartbeats)")
                        return
                    continue
                msg = m.decode(conn.recv_bytes(MAX_MESSAGE))
            except (EOFError, OSError) as exc:
                if not self._closing:
                    self._lost("the connection was closed" if isinstance(exc, EOFError)
                               else f"the connection was lost ({type(exc).__name__}: {exc})")
                return
            except ProtocolError as exc:
                self._lost(f"protocol error: {exc}")
                return
            self._last_seen = time.monotonic()
            if isinstance(msg, m.Ping):
                try:
                    self._send_now(m.encode(m.Pong(msg.seq, self.clock())))
                except OSError as exc:
                    self._lost(f"sending failed ({type(exc).__name__}: {exc})")
                    return
            elif isinstance(msg, m.Answer):
                with self._cond:
                    self._answers[msg.seq] = msg
                    self._cond.notify_all()
            elif isinstance(msg, m.Start | m.Merged | m.Failed | m.Stop):
                with self._cond:
                    load = self._loads.get(msg.key)
                    if load is not None:
                        if isinstance(msg, m.Start):
                            load._start = msg
                            load._started_mono = time.monotonic()
                        elif isinstance(msg, m.Merged):
                            load._merged = msg
                        elif isinstance(msg, m.Stop):
                            load._stopped = msg
                            load.stop.set()
                        else:
                            load._failed = msg
                            load.stop.set()
                        self._cond.notify_all()
            elif not isinstance(msg, m.Heartbeat):
                self._lost(f"protocol error: the coordinator does not send {msg.TYPE}")
                return
