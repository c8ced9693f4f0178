"""Running one perf test on every xdist worker at once.

The only module that knows xdist.

The controller and its workers share a directory (passed in ``workerinput``). Workers register
their pid there, list their perf items at collection, meet at a per-test barrier, and leave their
partial results for each other. Every worker then merges the same partials, so every worker sees
the same merged result; only one of them (the leader) reports the verdict.

It imports xdist only when ``-n`` is on. `XdistWorker` is a worker's side of it,
`XdistController` the controller's hooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

START_DELAY = 0.5  # seconds between the last arrival at a barrier and the common start


class DistributedError(Exception):
    """A perf test could not run on all workers together."""


def worker_number(wid: str) -> int:
    m = re.search(r"(\d+)$", wid)
    return int(m.group(1)) if m else 0


def _atomic_write(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class SharedDir:
    """The directory layout shared by the controller and its workers."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _ensure(self, *parts: str) -> Path:
        p = self.path.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    # workers
    def register_worker(self, wid: str, pid: int | None = None) -> None:
        _atomic_write(self._ensure("workers") / f"{wid}.json", {"pid": pid or os.getpid()})

    def worker_dead(self, wid: str) -> bool:
        """True when the worker registered and its process is gone."""
        f = self.path / "workers" / f"{wid}.json"
        try:
            pid = json.loads(f.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return False
        return not _pid_alive(int(pid))

    # collection
    def write_collection(self, wid: str, perf: dict[str, str | None], needs: set[str]) -> None:
        """Record a worker's perf items (node id -> stage) and what its items need from the
        controller (names a harness chose, such as ``stage:2``)."""
        _atomic_write(self._ensure("collection") / f"{wid}.json",
                      {"perf": perf, "needs": sorted(needs)})

    def read_collection(self) -> tuple[dict[str, str | None], set[str]]:
        perf: dict[str, str | None] = {}
        needs: set[str] = set()
        folder = self.path / "collection"
        for f in sorted(folder.glob("*.json")) if folder.exists() else []:
            data = json.loads(f.read_text())
            perf.update(data["perf"])
            needs.update(data["needs"])
        return perf, needs

    # what the controller provides (the servers it started)
    def write_provided(self, provided: dict[str, Any]) -> None:
        self._ensure()
        _atomic_write(self.path / "provided.json", provided)

    def read_provided(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.path / "provided.json").read_text())
        except FileNotFoundError:
            return {}
        return data

    def test_dir(self, nodeid: str) -> Path:
        return self._ensure("tests", hashlib.sha1(nodeid.encode()).hexdigest()[:16])


class Rendezvous:
    """One perf test's meeting of the workers: barrier, shares, partial results."""

    def __init__(self, shared: SharedDir, nodeid: str, wid: str, participants: Sequence[str],
                 *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.shared = shared
        self.dir = shared.test_dir(nodeid)
        self.wid = wid
        self.participants = sorted(participants, key=worker_number)
        self.sleep = sleep
        self.arrived: list[str] = []
        self.start_at = 0.0

    def _files(self, prefix: str) -> dict[str, Path]:
        return {p.stem[len(prefix):]: p for p in self.dir.glob(f"{prefix}*.json")}

    def _missing(self, have: dict[str, Path], expected: Sequence[str]) -> list[str]:
        return [w for w in expected if w not in have and not self.shared.worker_dead(w)]

    def arrive(self, timeout: float) -> tuple[int, int]:
        """Wait for every live participant; return (my share index, number of shares)."""
        _atomic_write(self.dir / f"arrive-{self.wid}.json", {"time": time.time()})
        deadline = time.monotonic() + timeout
        while True:
            have = self._files("arrive-")
            missing = self._missing(have, self.participants)
            if not missing:
                break
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"barrier timeout after {timeout:.0f}s: worker(s) {', '.join(missing)} did "
                    "not reach this perf test (busy with a long test, or stuck)")
            self.sleep(0.02)
        self.arrived = sorted(have, key=worker_number)
        times = [json.loads(have[w].read_text())["time"] for w in self.arrived]
        self.start_at = max(times) + START_DELAY
        return self.arrived.index(self.wid), len(self.arrived)

    @property
    def leader(self) -> bool:
        return bool(self.arrived) and self.arrived[0] == self.wid

    def exchange(self, partial: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Leave my partial result and collect everyone's, in worker order."""
        _atomic_write(self.dir / f"partial-{self.wid}.json", partial)
        deadline = time.monotonic() + timeout
        while True:
            have = self._files("partial-")
            waiting = [w for w in self.arrived if w not in have]
            dead = [w for w in waiting if self.shared.worker_dead(w)]
            if dead:
                raise DistributedError(
                    f"worker(s) {', '.join(dead)} crashed during this perf test; their partial "
                    "results are missing, so the merged result would be wrong")
            if not waiting:
                return [json.loads(have[w].read_text()) for w in self.arrived]
            if time.monotonic() > deadline:
                raise DistributedError(f"timeout after {timeout:.0f}s waiting for the partial "
                                       f"results of worker(s) {', '.join(waiting)}")
            self.sleep(0.02)


def drop_reports(dsession: Any, drop: Callable[[Any], bool]) -> None:
    """Keep the controller from seeing some worker reports at all.

    Every worker runs a perf test, but only the leader's report should reach the terminal,
    the exit code and JUnit. xdist hands each worker report to ``DSession.worker_testreport``,
    which calls ``pytest_runtest_logreport``; a report dropped here is never logged anywhere,
    while the scheduler still learns that the item finished (a separate event).
    """
    original = dsession.worker_testreport

    def worker_testreport(node: Any, rep: Any) -> None:
        if not drop(rep):
            original(node=node, rep=rep)

    dsession.worker_testreport = worker_testreport


def make_scheduler(config: Any, log: Any, shared: SharedDir,
                   before_dispatch: Callable[[dict[str, str | None], set[str]], None]) -> Any:
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
            perf, needs = shared.read_collection()
            before_dispatch(perf, needs)
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


REPORT_ATTR = "minigram"  # the attribute of a test report that carries its perf records


def is_follower_report(report: Any) -> bool:
    info = getattr(report, REPORT_ATTR, None)
    return isinstance(info, dict) and info.get("role") == "follower"


class XdistWorker:
    """A worker's view: its id, its peers, the shared directory, its role per perf test."""

    def __init__(self, workerinput: dict[str, Any]) -> None:
        self.shared = SharedDir(workerinput["minigram_dir"])
        self.wid = str(workerinput["workerid"])
        self.participants = [f"gw{i}" for i in range(int(workerinput["workercount"]))]
        self.shared.register_worker(self.wid)

    def leader(self) -> str | None:
        """The worker that reports for a perf test: the lowest-numbered live one."""
        live = [w for w in self.participants if not self.shared.worker_dead(w)]
        return live[0] if live else None

    def static_role(self) -> str:
        return "leader" if self.leader() == self.wid else "follower"

    def peers_alive(self, peers: Sequence[str]) -> bool:
        return not any(self.shared.worker_dead(w) for w in peers if w != self.wid)

    def provided(self, name: str) -> Any:
        """What the controller's ``pytest_minigram_xdist_provide`` returned for ``name``."""
        provided = self.shared.read_provided()
        if name not in provided:
            raise DistributedError(f"the xdist controller provided no {name!r}")
        return provided[name]

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        perf: dict[str, str | None] = {}
        for item in items:
            if item.get_closest_marker("perf") is not None:
                callspec = getattr(item, "callspec", None)
                stage = callspec.params.get("minigram_stage") if callspec else None
                perf[item.nodeid] = None if stage is None else str(stage)
        needs: set[str] = set()
        for answer in config.hook.pytest_minigram_xdist_needs(config=config, items=items):
            needs.update(answer or ())
        self.shared.write_collection(self.wid, perf, needs)


class XdistController:
    """Controller-side xdist wiring: a shared directory, the scheduler, what it provides."""

    def __init__(self, config: pytest.Config, tmpdir: Callable[[], Path]) -> None:
        self.config = config
        self._tmpdir = tmpdir
        self._shared: SharedDir | None = None
        self.active = False  # set once xdist configures a worker node

    @property
    def shared(self) -> SharedDir:
        if self._shared is None:
            self._shared = SharedDir(self._tmpdir() / "xdist")
            self._shared.path.mkdir(parents=True, exist_ok=True)
        return self._shared

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        dsession = session.config.pluginmanager.getplugin("dsession")
        if dsession is not None:
            # Every worker ran the perf test and saw the same merged result; only the
            # leader's reports speak for it.
            drop_reports(dsession, is_follower_report)

    def pytest_configure_node(self, node: Any) -> None:
        self.active = True
        node.workerinput["minigram_dir"] = str(self.shared.path)

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") != "load":
            return None

        def before_dispatch(perf: dict[str, str | None], needs: set[str]) -> None:
            started = time.monotonic()
            provided: dict[str, Any] = {}
            for answer in config.hook.pytest_minigram_xdist_provide(config=config,
                                                                    needs=needs):
                provided.update(answer or {})
            self.shared.write_provided(provided)
            if needs:
                log(f"minigram: controller ready in {time.monotonic() - started:.1f}s")

        return make_scheduler(config, log, self.shared, before_dispatch)
