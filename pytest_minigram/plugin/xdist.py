"""Running one perf test on every xdist worker at once, coordinated by the controller.

The only module that knows xdist, and the plugin's only user of `pytest_minigram.coordination`.
The controller opens a `Coordinator` (address and a random per-session secret go to the
workers in ``workerinput``); each worker joins it, tells it the perf tests it collected, asks
it for what it provides (the servers it starts once for all workers), and meets the others
at every load call. The controller merges each load once and every worker judges the same
merged result. Perf tests are sent to every worker; the controller holds each perf test's
reports until every worker that ran it has reported, then reports it once: failed if it
failed anywhere, naming the worker.

Supported ``--dist`` modes: ``load`` (the default with ``-n``) and ``each``; the modes that
send a test to one worker only (``loadfile``, ``loadscope``, ``loadgroup``, ``worksteal``) are
refused when the session has perf tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from pytest_minigram.coordination import (
    CoordinationError,
    Coordinator,
    LoadKey,
    LoadObserver,
    WorkerClient,
)

REPORT_ATTR = "minigram"  # the attribute of a test report that carries its perf records
SUPPORTED_DIST = ("load", "each")
COLLECTION_TIMEOUT = 60.0


class DistributedError(Exception):
    """A perf test could not run on all workers together."""


def perf_ids(items: Sequence[pytest.Item]) -> list[str]:
    return [item.nodeid for item in items if item.get_closest_marker("perf") is not None]


def refuse_dist(dist: str, perf: Sequence[str]) -> None:
    if perf and dist not in SUPPORTED_DIST:
        raise pytest.UsageError(
            f"--dist {dist}: pytest-minigram runs each perf test on every xdist worker at "
            f"once (the workers are its users), which --dist {dist} cannot do; use --dist load "
            f"(the default with -n) or --dist each. Perf tests here: {', '.join(perf[:3])}"
            + (" ..." if len(perf) > 3 else ""))


class XdistWorker:
    """A worker's side: its connection to the coordinator, one load key per load call."""

    def __init__(self, workerinput: dict[str, Any]) -> None:
        self.wid = str(workerinput["workerid"])
        self.client = WorkerClient.from_worker_input(workerinput, self.wid).connect()
        self._calls: dict[str, int] = {}

    def next_key(self, nodeid: str) -> LoadKey:
        """Every load call of a test is its own rendezvous: (test id, call index)."""
        index = self._calls.get(nodeid, 0)
        self._calls[nodeid] = index + 1
        return (nodeid, index)

    def provided(self, name: str) -> Any:
        """What the controller's ``pytest_minigram_provide`` gives for ``name``."""
        try:
            return self.client.ask(name)
        except CoordinationError as exc:
            raise DistributedError(str(exc)) from None

    def close(self) -> None:
        self.client.close()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        self.client.collected(perf_ids(items))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Any:
        rep = yield
        if (rep.failed or rep.skipped) and item.get_closest_marker("perf") is not None:
            # the others are told at once: a load they wait for will never start
            what = ("skipped" if rep.skipped else
                    {"setup": "setup error", "teardown": "teardown error"}.get(rep.when,
                                                                               "failure"))
            self.client.fail(item.nodeid, f"{what} on worker {self.wid}: "
                             f"{_short(rep.longreprtext)}")
        return rep


def _short(text: str, limit: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "(no detail)"
    return last if len(last) <= limit else last[:limit] + "..."


def _is_perf_report(rep: Any) -> bool:
    """A report of a perf-marked test: every worker runs it (other tests that call
    ``minigram_load`` run on one worker and carry their records through as they are)."""
    info = getattr(rep, REPORT_ATTR, None)
    return isinstance(info, dict) and bool(info.get("perf"))


class ReportCombiner:
    """Holds a perf test's reports until every worker that ran it has reported, then emits one.

    Passed only when it passed everywhere; otherwise the (first) failure, naming its worker.
    A worker that goes down counts as a failure of the tests it had not reported.
    """

    def __init__(self, emit: Callable[[Any, Any], None]) -> None:
        self.emit = emit  # DSession.worker_testreport(node, rep)
        self.live: dict[str, Any] = {}  # worker id -> node
        self.pending: dict[tuple[str, str], dict[str, Any]] = {}
        # every phase of a test is emitted as from one worker: JUnit keys a test case by its
        # node id and worker, and one test must be one test case
        self.canonical: dict[str, Any] = {}
        self.setup_failed: set[str] = set()
        self.verdicts: dict[str, str] = {}

    def add(self, node: Any, rep: Any) -> None:
        if not _is_perf_report(rep):
            self.emit(node, rep)
            return
        if rep.when == "call" and rep.nodeid in self.setup_failed:
            return  # its setup error is its report, as without xdist
        wid = str(node.gateway.id)
        self.pending.setdefault((rep.nodeid, rep.when), {})[wid] = (node, rep)
        self._flush()

    def node_down(self, node: Any, why: str) -> None:
        wid = str(node.gateway.id)
        self.live.pop(wid, None)
        for reports in self.pending.values():
            if wid not in reports:
                reports[f"{wid} (down)"] = (node, why)
        self._flush()

    def _flush(self) -> None:
        for key in list(self.pending):
            if set(self.live) <= {w.split(" ")[0] for w in self.pending[key]}:
                self._emit(self.pending.pop(key))

    def _emit(self, reports: dict[str, Any]) -> None:
        real = [(w, n, r) for w, (n, r) in reports.items() if not isinstance(r, str)]
        down = [(w, r) for w, (_, r) in reports.items() if isinstance(r, str)]
        if not real:
            return
        failed = [(w, n, r) for w, n, r in real if r.failed]
        outcomes = {r.outcome for _, _, r in real}
        wid, node, rep = failed[0] if failed else real[0]
        if failed:
            others = [w for w, _, _ in failed[1:]]
            rep.longrepr = (f"[on xdist worker {wid}"
                            + (f"; also failed on {', '.join(others)}" if others else "")
                            + f"]\n{rep.longreprtext}")
        elif len(outcomes) > 1:  # say, skipped on one machine and passed on another
            rep.outcome = "failed"
            rep.longrepr = ("the workers disagree: " + ", ".join(
                f"{r.outcome} on {w}" + (f" ({_short(r.longreprtext)})" if r.skipped else "")
                for w, _, r in real))
        elif down and rep.when == "call":
            rep.outcome = "failed"
            rep.longrepr = "; ".join(f"xdist worker {w.split(' ')[0]} {why}" for w, why in down)
        if rep.when == "call":
            self.verdicts[rep.nodeid] = rep.outcome
        elif rep.when == "teardown" and rep.nodeid in self.verdicts:
            # JUnit writes the properties of the teardown report: the verdict is the one given
            rep.user_properties = [
                (k, self.verdicts[rep.nodeid] if k == "minigram_verdict" else v)
                for k, v in rep.user_properties]
        if rep.when == "setup" and rep.failed:
            self.setup_failed.add(rep.nodeid)
            self.pending.pop((rep.nodeid, "call"), None)
        self.emit(self.canonical.setdefault(rep.nodeid, node), rep)


class XdistController:
    """Controller-side xdist wiring: the coordinator, the scheduler, one report per test."""

    def __init__(self, config: pytest.Config, host: str, port: int, advertise: str | None,
                 provide: Callable[[str], Any], observer: LoadObserver | None = None) -> None:
        self.config = config
        self.observer = observer
        self.host, self.port, self.advertise = host, port, advertise
        self.provide = provide
        self._coordinator: Coordinator | None = None
        self.combiner: ReportCombiner | None = None
        self.workers: set[str] = set()  # those that take part in the perf tests
        self.dispatched = False  # perf tests were handed out: a replacement takes no part

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = Coordinator(self.host, self.port, provide=self.provide,
                                            keep_results=False, observer=self.observer).start()
        return self._coordinator

    @property
    def active(self) -> bool:
        return self._coordinator is not None

    def stop_test(self, test: str, reason: str) -> bool:
        """Stop ``test``'s running load on every worker (the live page's stop button)."""
        if self._coordinator is None:
            return False
        self._coordinator.stop_test(test, reason)
        return True

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        dsession = session.config.pluginmanager.getplugin("dsession")
        if dsession is not None:
            original = dsession.worker_testreport

            def emit(node: Any, rep: Any) -> None:
                original(node=node, rep=rep)

            self.combiner = ReportCombiner(emit)
            combiner = self.combiner

            def worker_testreport(node: Any, rep: Any) -> None:
                combiner.add(node, rep)

            dsession.worker_testreport = worker_testreport

    def pytest_configure_node(self, node: Any) -> None:
        wid = str(node.workerinput["workerid"])
        if not self.dispatched:
            # a worker that replaces a crashed one is given no perf test (the scheduler sent
            # them to the first workers), so no load waits for it
            self.coordinator.expect(wid)
            self.workers.add(wid)
            if self.combiner is not None:
                self.combiner.live[wid] = node
        node.workerinput.update(self.coordinator.worker_input(self.advertise))

    def pytest_testnodeready(self, node: Any) -> None:
        wid = str(node.gateway.id)
        if self.combiner is not None and wid in self.workers:
            self.combiner.live[wid] = node

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        wid = str(node.gateway.id)
        if self._coordinator is not None:
            self._coordinator.forget(wid)
        if self.combiner is not None:
            self.combiner.node_down(node, f"went down ({error})" if error else "went down")

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        """Refuse a --dist mode that cannot run perf tests on every worker, before any runs."""
        dist = str(self.config.getoption("dist"))
        if dist in SUPPORTED_DIST:
            return
        wid = str(node.gateway.id)
        collected = self.coordinator.wait_collected([wid], COLLECTION_TIMEOUT)
        refuse_dist(dist, collected.get(wid, []))

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") != "load":
            return None
        return make_scheduler(config, log, self._perf_of)

    def _perf_of(self, workers: Sequence[str]) -> set[str]:
        self.dispatched = True
        started = time.monotonic()
        collected = self.coordinator.wait_collected(workers, COLLECTION_TIMEOUT)
        perf = {nodeid for ids in collected.values() for nodeid in ids}
        if perf and time.monotonic() - started > 1:
            print(f"minigram: waited {time.monotonic() - started:.1f}s for the workers' "
                  "collections")
        return perf

    def collected_perf(self) -> set[str]:
        if self._coordinator is None:
            return set()
        return {nodeid for ids in self._coordinator.collected().values() for nodeid in ids}

    def close(self) -> None:
        if self._coordinator is not None:
            self._coordinator.close()
            self._coordinator = None


def make_scheduler(config: Any, log: Any, perf_of: Callable[[Sequence[str]], set[str]]) -> Any:
    """An xdist scheduler that gives every worker all perf items first, then load-balances."""
    from xdist.scheduler import LoadScheduling

    class PerfScheduling(LoadScheduling):  # type: ignore[misc]
        perf_indices: set[int] = set()

        def schedule(self) -> None:
            assert self.collection_is_completed
            if self.collection is not None:
                for node in self.nodes:
                    self.check_schedule(node)
                return
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = next(iter(self.node2collection.values()))
            if not self.collection:
                return
            perf = perf_of([str(node.gateway.id) for node in self.nodes])
            self.perf_indices = {i for i, nid in enumerate(self.collection) if nid in perf}
            ordered = sorted(self.perf_indices)
            self.pending[:] = [i for i in range(len(self.collection))
                               if i not in self.perf_indices]
            if self.maxschedchunk is None:
                self.maxschedchunk = len(self.collection)
            for node in self.nodes:
                if ordered:
                    self.node2pending[node].extend(ordered)
                    node.send_runtest_some(ordered)
            if self.pending:
                per_node = max(2, min(len(self.pending) // len(self.nodes) // 4,
                                      self.maxschedchunk))
                for node in self.nodes:
                    self._send_tests(node, per_node)
            if not self.pending:
                for node in self.nodes:
                    node.shutdown()

        def remove_node(self, node: Any) -> str | None:
            pending = self.node2pending.pop(node)
            if not pending:
                return None
            assert self.collection is not None
            crashitem: str = self.collection[pending.pop(0)]
            # Perf items run on every worker; the others still run them, so don't re-queue.
            self.pending.extend(i for i in pending if i not in self.perf_indices)
            for other in self.node2pending:
                self.check_schedule(other)
            return crashitem

    return PerfScheduling(config, log)
