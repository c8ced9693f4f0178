"""The xdist rendezvous: barrier, shares, partial results, crashed workers."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.plugin.xdist import DistributedError, Rendezvous, SharedDir, worker_number


def meet(shared: SharedDir, wid: str, workers: list[str], out: dict[str, Any]) -> None:
    rv = Rendezvous(shared, "tests/test_x.py::test_y", wid, workers)
    index, shares = rv.arrive(timeout=10)
    parts = rv.exchange({"wid": wid, "index": index}, timeout=10)
    out[wid] = (index, shares, rv.leader, rv.start_at, parts)


def test_all_workers_meet_and_see_the_same_partials(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    workers = ["gw0", "gw1", "gw2", "gw10"]
    for w in workers:
        shared.register_worker(w)
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=meet, args=(shared, w, workers, out)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(out) == sorted(workers)
    assert {out[w][0] for w in workers} == {0, 1, 2, 3}
    assert {out[w][1] for w in workers} == {4}
    assert [w for w in workers if out[w][2]] == ["gw0"]
    assert len({out[w][3] for w in workers}) == 1  # one common start time
    parts = out["gw0"][4]
    assert all(out[w][4] == parts for w in workers)
    assert [p["wid"] for p in parts] == ["gw0", "gw1", "gw2", "gw10"]  # numeric order


def test_a_dead_worker_is_left_out_of_the_barrier(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    shared.register_worker("gw0")
    shared.register_worker("gw1", pid=dead.pid)
    rv = Rendezvous(shared, "t", "gw0", ["gw0", "gw1"])
    assert rv.arrive(timeout=5) == (0, 1)
    assert rv.leader


def test_barrier_times_out_naming_the_missing_worker(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    shared.register_worker("gw0")
    shared.register_worker("gw1")  # alive (this process) but never arrives
    rv = Rendezvous(shared, "t", "gw0", ["gw0", "gw1"])
    with pytest.raises(DistributedError, match="gw1 did not reach"):
        rv.arrive(timeout=0.3)


def test_worker_dying_during_the_load_fails_the_exchange(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        shared.register_worker("gw0")
        shared.register_worker("gw1", pid=proc.pid)
        (shared.test_dir("t") / "arrive-gw1.json").write_text('{"time": 0}')
        rv = Rendezvous(shared, "t", "gw0", ["gw0", "gw1"])
        assert rv.arrive(timeout=5) == (0, 2)
        proc.kill()
        proc.wait()
        with pytest.raises(DistributedError, match="gw1 crashed during this perf test"):
            rv.exchange({"x": 1}, timeout=5)
    finally:
        proc.kill()


def test_collection_files_merge(tmp_path: Path) -> None:
    shared = SharedDir(tmp_path)
    shared.write_collection("gw0", {"a::t[stage1]": "1"}, {"1"})
    shared.write_collection("gw1", {"a::t[stage1]": "1", "b::u": None}, {"1", "2"})
    perf, needs = shared.read_collection()
    assert perf == {"a::t[stage1]": "1", "b::u": None}
    assert needs == {"1", "2"}


def test_worker_number() -> None:
    assert sorted(["gw10", "gw2", "gw0"], key=worker_number) == ["gw0", "gw2", "gw10"]
