"""Coordinating one perf test's load across many workers, over the network.

One :class:`Coordinator` runs on the controller (the xdist controller process); each worker
(an xdist worker, on this machine or another) has a :class:`WorkerClient`. They talk over one
authenticated TCP connection each (``multiprocessing.connection``: HMAC challenge with a
random per-session secret, then JSON messages; see :mod:`.messages`). Nothing goes through
the filesystem and nothing depends on another machine's pids.

The controller owns each load call's lifecycle: which workers take part (those it
:meth:`~Coordinator.expect`\\ s, whatever their ids, minus those gone), each one's share, the
start instant (given to each worker in its own clock, after measuring its offset NTP-style),
the merge (once, on the controller) and the verdict. Every load call of a test is its own
rendezvous, keyed ``(test id, call index)``. While a load runs, workers stream per-second
deltas that the controller folds into one merged series (memory grows with the run's length,
not with the number of workers); at the end each sends its partial result without its time
series, the controller merges it exactly (``pytest_minigram.load.merge``) and sends the same
merged result to every worker. A worker that errors, falls silent for three heartbeats
(1 s each) or disconnects, a missed deadline, or a server whose health URL stops answering,
fails the load *for every worker*, naming the cause; every wait has a timeout.

Controller (e.g. in ``pytest_configure`` / ``pytest_configure_node`` / ``pytest_unconfigure``)::

    from pytest_minigram.coordination import Coordinator

    coord = Coordinator(host="127.0.0.1", port=0).start()   # host: reachable by the workers
    node.workerinput.update(coord.worker_input())           # address + secret, plain strings
    coord.expect(node.workerinput["workerid"])              # for every worker that takes part
    ...
    outcome = coord.pop_outcome(nodeid)    # PerfTestOutcome: .failed, .reason, .loads[i].result
    coord.forget("gw3")                    # a worker that went down takes part in no more loads
    coord.close()

Worker (once per worker session, then per load call of a perf test)::

    from pytest_minigram.coordination import LoadFailed, WorkerClient
    from pytest_minigram.load import run

    client = WorkerClient.from_worker_input(config.workerinput).connect()
    try:
        with client.arrive((nodeid, call_index), expected_duration=wl.planned_duration(),
                           health_urls=[target + "/healthz"]) as load:  # blocks until start
            partial = run(wl.split(load.count)[load.index], journey, target,
                          start_at=load.start_at, stop_event=load.stop, seed=load.index,
                          on_start=load.on_start, on_second=load.on_second)
            merged = load.finish(partial)   # the same merged Result on every worker
    except LoadFailed as exc:               # failed for everyone: exc.reason, exc.workers
        pytest.fail(str(exc), pytrace=False)
    ...
    client.fail(nodeid, "setup error: ...")  # a test that failed here fails everywhere
    client.close()

``LoadFailed``, ``CoordinationTimeout``, ``CoordinatorGone`` and ``Refused`` are all
:class:`CoordinationError`\\ s whose message says what went wrong and with which worker.
"""

from __future__ import annotations

from pytest_minigram.coordination.clock import ClockOffset, best_offset, shifted_clock
from pytest_minigram.coordination.coordinator import (
    WORKERINPUT_ADDRESS,
    WORKERINPUT_SECRET,
    Coordinator,
    LoadObserver,
    LoadOutcome,
    PerfTestOutcome,
    WorkerFailure,
    WorkerInfo,
)
from pytest_minigram.coordination.errors import (
    CoordinationError,
    CoordinationTimeout,
    CoordinatorGone,
    LoadFailed,
    ProtocolError,
    Refused,
    Timeouts,
)
from pytest_minigram.coordination.health import HealthWatch, check_health
from pytest_minigram.coordination.messages import LoadKey
from pytest_minigram.coordination.series import SeriesAggregate
from pytest_minigram.coordination.worker import Load, WorkerClient

__all__ = [
    "WORKERINPUT_ADDRESS",
    "WORKERINPUT_SECRET",
    "ClockOffset",
    "CoordinationError",
    "CoordinationTimeout",
    "Coordinator",
    "CoordinatorGone",
    "HealthWatch",
    "Load",
    "LoadFailed",
    "LoadKey",
    "LoadObserver",
    "LoadOutcome",
    "PerfTestOutcome",
    "ProtocolError",
    "Refused",
    "SeriesAggregate",
    "Timeouts",
    "WorkerClient",
    "WorkerFailure",
    "WorkerInfo",
    "best_offset",
    "check_health",
    "shifted_clock",
]
