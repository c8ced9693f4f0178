"""The plugin's session object: its state and the hooks that act on it.

``plugin.py`` registers one ``MinigramSession`` per pytest session (and ``XdistHooks`` when xdist
is on). It keeps the stage servers, runs loads for the fixtures, carries each perf test's merged
result on its report, and at the end prints the summary table and writes the results.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram import distributed
from pytest_minigram.backends import BackendUnavailable
from pytest_minigram.compare import (
    ComparisonReport,
    Tolerance,
    compare_runs,
    format_table,
    parse_tolerances,
)
from pytest_minigram.environment import collect_environment
from pytest_minigram.journeys import get_journey, register_journey
from pytest_minigram.load import Closed, Journey, Open, RampingRate, Result, concat, merge, run
from pytest_minigram.load import parse_duration as _parse_duration
from pytest_minigram.outputs import Outputs, unique_tests, write_outputs
from pytest_minigram.plugin_options import Settings
from pytest_minigram.server import ServerDied, stop_all
from pytest_minigram.stages import BASELINE, HEAD, StagePool, process_tree_cpu
from pytest_minigram.storage import (
    BaselineError,
    NoSavedRun,
    load_run,
    new_run,
    open_storage,
)
from pytest_minigram.summary import PerfRecord, table

SESSION_KEY = pytest.StashKey["MinigramSession"]()
RECORDS = pytest.StashKey[list[dict[str, Any]]]()
ROLE = pytest.StashKey[str]()
BARRIER_TIMEOUT = 120.0
JUNIT_METRICS = ("throughput", "error_rate", "p50", "p95", "p99", "apdex_score", "count")


def get_session(config: pytest.Config) -> MinigramSession:
    return config.stash[SESSION_KEY]


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    try:
        return _parse_duration(str(value))
    except ValueError:
        raise pytest.UsageError(f"minigram_load: bad {what} {value!r}; expected seconds or a "
                                "time such as 20s, 500ms or 2m") from None


class MinigramSession:
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.is_worker = self.workerinput is not None
        self.is_controller = False  # set by XdistHooks on the xdist controller
        self.records: list[PerfRecord] = []
        self._tmp: Path | None = None
        self._pool: StagePool | None = None
        self.shared: distributed.SharedDir | None = None
        self.wid = "main"
        self.participants: list[str] = []
        if self.workerinput is not None and "minigram_dir" in self.workerinput:
            self.shared = distributed.SharedDir(self.workerinput["minigram_dir"])
            self.wid = self.workerinput["workerid"]
            self.participants = [f"gw{i}" for i in range(self.workerinput["workercount"])]
            self.shared.register_worker(self.wid)
        self.baseline: dict[str, Any] | None = None
        self.baseline_source = ""
        self.duet_source = (f"measured side by side from {settings.duet}" if settings.duet
                            else "measured side by side (minigram_baseline_target)")
        self.tolerances: list[Tolerance] = []
        self.comparison: ComparisonReport | None = None
        self.written: list[str] = []
        self._load_baseline()
        self._old_sigterm: Any = None
        if not self.is_worker and threading.current_thread() is threading.main_thread():
            # SIGTERM becomes an interruption, so fixtures and servers are torn down as on
            # Ctrl-C; atexit is the last net for anything still running.
            _TERMINATING.clear()  # a SIGTERM of an earlier in-process session is over
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
            atexit.register(stop_all)

    # baseline ------------------------------------------------------------------------------
    def _load_baseline(self) -> None:
        s = self.settings
        if s.compare_fail:
            try:
                self.tolerances = parse_tolerances(s.compare_fail)
            except ValueError as exc:
                raise pytest.UsageError(
                    f"--minigram-compare-fail (ini: minigram_compare_fail): {exc}") from None
        # --minigram-compare-fail alone gates on the latest saved run, or with --minigram-duet
        # on the baseline measured side by side
        ref = s.compare or ("latest" if s.compare_fail and s.duet is None else None)
        self.missing_baseline = ""
        if ref is None:
            return
        try:
            if Path(ref).suffix == ".json" or Path(ref).is_file():
                self.baseline, self.baseline_source = load_run(ref), str(ref)
            else:
                storage = open_storage(s.storage)
                try:
                    self.baseline = storage.load(ref)
                finally:
                    storage.close()
                self.baseline_source = f"{ref} in {s.storage}"
        except BaselineError as exc:
            if s.compare is None and isinstance(exc, NoSavedRun):
                # Nothing saved yet, but a minigram_baseline_target fixture may still measure
                # a baseline side by side: a perf test that gets neither fails (see below).
                self.missing_baseline = str(exc)
                return
            raise pytest.UsageError(f"--minigram-compare: {exc}") from None

    def _no_baseline(self, record: dict[str, Any]) -> str | None:
        """Why a gated perf test has nothing to be compared with; None when it has."""
        if (not self.tolerances or record.get("duet_baseline") is not None
                or self.baseline is not None or record.get("kind") == "breaking"):
            return None  # a breaking-point search is gated against saved runs only
        why = self.missing_baseline or (
            "this test measured none side by side (its target is not the Minigram that "
            "--minigram-duet starts) and no saved run was given (--minigram-compare)")
        return (f"{why}; save one (--minigram-save) or measure one side by side "
                "(--minigram-duet, or a minigram_baseline_target fixture)")

    def _compare_record(self, record: dict[str, Any]) -> list[str]:
        """Set the record's comparison; return the regressions that fail the test."""
        (entry,) = unique_tests([record])
        if record.get("duet_baseline") is not None:
            baseline, source = duet_baseline_run([entry]), self.duet_source
        elif self.baseline is not None:
            baseline, source = self.baseline, self.baseline_source
        else:
            return []
        report = compare_runs(baseline, new_run({}, [entry]), self.tolerances,
                              baseline_source=source)
        comp = report.find(entry["test"], entry["stage"])
        if comp is None:
            return []
        record["comparison"] = report.to_dict()["tests"][0]["changes"]
        return [f"{c.metric}: {c.baseline:.6g} -> {c.current:.6g} "
                f"({'n/a' if c.change is None else f'{c.change:+.1%}'}; floor of the "
                f"per-second windows {_pct(c.floor_change)}, p={c.p_value:.3g}), "
                f"beyond {c.tolerance}" for c in comp.regressions]

    # state ---------------------------------------------------------------------------------
    @property
    def tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="minigram-"))
        return self._tmp

    @property
    def pool(self) -> StagePool:
        if self._pool is None:
            hook = self.config.hook

            def seed_sizes(stage: str) -> dict[str, int]:
                answer = hook.pytest_minigram_seed_data(config=self.config, stage=stage)
                return answer or {"users": self.settings.seed_users,
                                  "photos": self.settings.seed_photos}

            self._pool = StagePool(self.tmpdir / "servers", pg_url=self.settings.pg_url,
                                   redis_url=self.settings.redis_url, seed_sizes=seed_sizes,
                                   instances=self.settings.rounds,
                                   baseline_code=self.settings.duet)
        return self._pool

    def server_info(self, stage: str, side: str = HEAD) -> dict[str, Any]:
        if self.shared is not None:
            info = self.shared.read_servers().get(_server_key(stage, side))
            if info is None:
                raise RuntimeError(f"the xdist controller started no server for stage {stage}"
                                   + ("" if side == HEAD else f" ({side})"))
            if "error" in info:
                raise BackendUnavailable(info["error"])
            return info
        return self.pool.get(stage, side).describe()

    def start_servers(self, stages: set[str]) -> dict[str, dict[str, Any]]:
        """On the xdist controller: start every stage the workers need, once."""
        servers: dict[str, dict[str, Any]] = {}
        sides = [HEAD] + ([BASELINE] if self.settings.duet is not None else [])
        for stage in sorted(stages):
            for side in sides:
                key = _server_key(stage, side)
                try:
                    servers[key] = self.pool.get(stage, side).describe()
                except BackendUnavailable as exc:
                    servers[key] = {"error": str(exc)}
                except Exception as exc:  # noqa: BLE001 - e.g. the baseline checkout is broken
                    if side == HEAD:
                        raise
                    servers[key] = {"error": f"{type(exc).__name__}: {exc}"}
        return servers

    def close(self) -> None:
        if self._old_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        if self._pool is not None:
            self._pool.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # loads ---------------------------------------------------------------------------------
    def journey(self, journey: Any) -> Journey:
        if isinstance(journey, Journey):
            return journey
        try:
            return get_journey(str(journey))
        except KeyError as exc:
            raise pytest.UsageError(f"minigram_load: {exc.args[0]}") from None

    def workload(self, *, users: int | None, duration: Any, rate: float | None,
                 stages: Any, ramp_up: Any, think_time: Any, iterations: int | None,
                 max_users: int | None) -> Any:
        s = self.settings
        dur = _seconds(duration, "duration") if duration is not None else None
        if dur is not None:
            dur = s.fixed_duration if s.fixed_duration else dur * s.duration_factor
        ramp = _seconds(ramp_up, "ramp_up") if ramp_up else 0.0
        if stages:
            scaled = [(float(r) * s.rate_factor,
                       s.duration_factor * _seconds(d, "stage duration")) for r, d in stages]
            return RampingRate(stages=scaled, max_users=max_users or 1000)
        if rate is not None:
            return Open(rate=float(rate) * s.rate_factor, duration=dur or 10.0,
                        max_users=max_users or 1000)
        n = max(1, round((users or 10) * s.users_factor))
        if dur is None and iterations is None:
            dur = 10.0 * s.duration_factor if not s.fixed_duration else s.fixed_duration
        return Closed(users=n, duration=dur, ramp_up=ramp, iterations=iterations,
                      think_time=think_time)

    def run_load(self, item: pytest.Item, journey: Any, target: str, *, stage: str | None,
                 server: Any, users: int | None = None, duration: Any = None,
                 rate: float | None = None, stages: Any = None, ramp_up: Any = 0.0,
                 think_time: Any = None, iterations: int | None = None,
                 max_users: int | None = None, params: dict[str, Any] | None = None,
                 apdex_t: float = 0.5, timeout: float = 10.0, rounds: int | None = None,
                 baseline: str | list[str] | None = None,
                 kind: str | None = None) -> tuple[dict[str, Any], Any]:
        j = self.journey(journey)
        wl = self.workload(users=users, duration=duration, rate=rate, stages=stages,
                           ramp_up=ramp_up, think_time=think_time, iterations=iterations,
                           max_users=max_users)
        n_rounds = self.settings.rounds if rounds is None else rounds
        if not isinstance(n_rounds, int) or isinstance(n_rounds, bool) or not 1 <= n_rounds <= 16:
            raise pytest.UsageError(f"minigram_load: bad rounds {rounds!r}; expected a whole "
                                    "number from 1 to 16")
        # Round r goes to the stage's r-th server process; a target of your own gets them all.
        targets = [target]
        if server is not None and target == server.url and len(server.urls) > 1:
            targets = list(server.urls)
        labels = {"test": item.nodeid, "stage": stage or "", "journey": j.name, "target": target}
        run_params = dict(params or {})
        if server is not None:
            run_params.setdefault("seed_users", server.seed.get("users", 0))
        options = {"timeout": timeout, "apdex_t": apdex_t, "labels": labels,
                   "params": run_params}
        server_pids = [pid for pid in (server.pids if server is not None else []) if pid]
        cpu_before = [process_tree_cpu(pid) for pid in server_pids]
        base_targets = [baseline] if isinstance(baseline, str) else list(baseline or [])
        base_pids = self._baseline_pids(server) if base_targets else []
        parts: dict[str, list[Result]] = {HEAD: [], BASELINE: []}
        used: dict[str, list[str]] = {HEAD: [], BASELINE: []}
        for index in range(n_rounds):
            # duet: baseline and head take turns, in the order ABBA ABBA..., so that a
            # machine that drifts faster or slower over the test treats both alike
            sides = [HEAD] if not base_targets else (
                [BASELINE, HEAD] if index % 2 == 0 else [HEAD, BASELINE])
            for side in sides:
                pool = targets if side == HEAD else base_targets
                round_target = pool[index % len(pool)]
                key = item.nodeid + ("" if side == HEAD else "#baseline") + (
                    f"#round{index}" if index else "")
                parts[side].append(self._run_round(
                    item, wl, j, round_target, server, options, key=key,
                    watch_pids=base_pids if side == BASELINE else []))
                used[side].append(round_target)
        result = _join(parts[HEAD], used[HEAD])
        result.labels.update(labels)
        self._check_server(server, base_pids)
        as_dict = result.to_dict()
        as_dict["workload"] = wl.to_dict()  # the whole load, not one worker's share
        cpu_after = [process_tree_cpu(pid) for pid in server_pids]
        if server_pids and None not in cpu_before and None not in cpu_after:
            as_dict["server"] = {
                "cpu_seconds": round(sum(cpu_after) - sum(cpu_before), 4),  # type: ignore[arg-type]
                "pid": server_pids[0]}
        record = {"test": item.nodeid, "stage": stage, "kind": kind or _kind(item),
                  "result": as_dict, "slo": [], "comparison": []}
        if base_targets:
            base_result = _join(parts[BASELINE], used[BASELINE])
            base_result.labels.update(labels, target=base_targets[0])
            record["duet_baseline"] = {**base_result.to_dict(), "workload": wl.to_dict()}
        item.stash.setdefault(RECORDS, []).append(record)
        if item.stash.get(ROLE, "single") != "follower":
            self.config.hook.pytest_minigram_result(config=self.config, nodeid=item.nodeid,
                                                    stage=stage, result=result)
        return record, result

    def _run_round(self, item: pytest.Item, wl: Any, j: Journey, target: str, server: Any,
                   options: dict[str, Any], key: str, watch_pids: list[int]) -> Result:
        """One run of the workload; under xdist, every worker's share, merged."""
        expected = (wl.planned_duration() or 600.0) + 60.0
        if self.shared is not None and item.get_closest_marker("perf") is not None:
            rv = distributed.Rendezvous(self.shared, key, self.wid, self.participants)
            try:
                index, shares = rv.arrive(timeout=BARRIER_TIMEOUT)
            except distributed.DistributedError as exc:
                raise pytest.fail.Exception(str(exc), pytrace=False) from None
            item.stash[ROLE] = "leader" if rv.leader else "follower"
            with _LoadWatch(self, server, rv.arrived, watch_pids) as watch:
                partial = run(wl.split(shares)[index], j, target, start_at=rv.start_at,
                              seed=index, stop_event=watch.stop, **options)
            watch.raise_if_interrupted(partial)
            try:
                parts = rv.exchange(partial.to_dict(), timeout=expected)
            except distributed.DistributedError as exc:
                raise pytest.fail.Exception(str(exc), pytrace=False) from None
            return merge([Result.from_dict(p) for p in parts])
        with _LoadWatch(self, server, [], watch_pids) as watch:
            result = run(wl, j, target, stop_event=watch.stop, **options)
        watch.raise_if_interrupted(result)
        return result

    def _stack(self, server: Any, side: str = HEAD) -> Any:
        """The Stack behind ``server`` (or its duet baseline) when this process started it."""
        if server is None or self._pool is None:
            return None
        return next((s for s in self._pool.running(side) if s.stage == server.stage), None)

    def server_alive(self, server: Any) -> bool:
        """Cheap liveness check, polled during a load (no HTTP: the server may be busy)."""
        if server is None:
            return True
        stack = self._stack(server)
        if stack is not None:
            return stack.alive
        return all(_pid_alive(pid) for pid in server.pids if pid)

    def _baseline_pids(self, server: Any) -> list[int]:
        """The duet baseline's server processes (none for a baseline this plugin did not start)."""
        if server is None or self.settings.duet is None:
            return []
        try:
            info = self.server_info(server.stage, BASELINE)
        except BackendUnavailable:
            return []
        return [pid for pid in info.get("pids") or [] if pid]

    def _check_server(self, server: Any, baseline_pids: list[int] | None = None) -> None:
        if server is None:
            return
        for side in (BASELINE, HEAD):
            stack = self._stack(server, side)
            for proc in stack.servers if stack is not None else ():
                proc.check_alive()
        dead = [pid for pid in baseline_pids or [] if not _pid_alive(pid)]
        if dead:
            raise ServerDied(f"the duet baseline's Minigram server for stage {server.stage} "
                             f"(pid {dead[0]}) stopped during the load")
        if self._stack(server) is None:
            dead = [pid for pid in server.pids if pid and not _pid_alive(pid)]
            if dead or not server.alive():
                what = f" (pid {dead[0]})" if dead else ""
                raise ServerDied(f"the Minigram server for stage {server.stage}{what} stopped "
                                 f"answering during the load. Last lines of its log:\n"
                                 f"{server.log_tail()}")

    # hooks ---------------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        s = self.settings
        workers = config.getoption("numprocesses", None) or 0
        pg = s.pg_url and "given URL" or "throwaway server if needed"
        rd = s.redis_url and "given URL" or "throwaway server if needed"
        scale = f"users x{s.users_factor:g}, rate x{s.rate_factor:g}, duration " + (
            f"{s.fixed_duration:g}s" if s.fixed_duration else f"x{s.duration_factor:g}")
        rounds = (f"; {s.rounds} rounds per perf test, on {s.rounds} server processes per stage"
                  if s.rounds > 1 else "")
        return [f"minigram: stages {', '.join(s.stages)}; {scale}{rounds}",
                f"minigram: backends: PostgreSQL {pg}, Redis {rd}"
                + ("; required" if s.require_backends else ""),
                f"minigram: generator processes: {workers or 1} "
                f"({'xdist workers' if workers else 'this process'})"]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        marker = metafunc.definition.get_closest_marker("perf")
        declarative = (marker is not None and bool(marker.kwargs)
                       and targets_minigram(metafunc.definition))
        if "minigram_server" in metafunc.fixturenames or declarative:
            metafunc.parametrize("minigram_stage", list(self.settings.stages), indirect=True,
                                 ids=[f"stage{s}" for s in self.settings.stages])

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if self.shared is None:
            return
        perf: dict[str, str | None] = {}
        stages: set[str] = set()
        for item in items:
            callspec = getattr(item, "callspec", None)
            stage = callspec.params.get("minigram_stage") if callspec else None
            if stage is not None and "minigram_server" in getattr(item, "fixturenames", ()):
                stages.add(str(stage))
            if item.get_closest_marker("perf") is not None:
                perf[item.nodeid] = str(stage) if stage is not None else None
                if stage is not None:
                    stages.add(str(stage))
        self.shared.write_collection(self.wid, perf, stages)

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
        from pytest_minigram.fixtures import run_declarative

        res = yield
        run_declarative(pyfuncitem)
        return res

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        rep = yield
        if item.get_closest_marker("perf") is None and RECORDS not in item.stash:
            return rep
        role = item.stash.get(ROLE, None) or self._static_role()
        records = item.stash.get(RECORDS, [])
        if rep.when == "call":
            regressions = [line for record in records for line in self._compare_record(record)]
            unbased = next(filter(None, map(self._no_baseline, records)), None)
            if unbased and rep.passed:
                rep.outcome = "failed"
                rep.longrepr = f"--minigram-compare-fail: no baseline to gate on: {unbased}"
            elif regressions and rep.passed:
                rep.outcome = "failed"
                source = (self.duet_source if any(r.get("duet_baseline") for r in records)
                          else self.baseline_source)
                rep.longrepr = ("performance regression against the baseline "
                                f"({source}):\n  " + "\n  ".join(regressions))
            for record in records:
                record["verdict"] = rep.outcome
            if records:  # junitxml writes the properties from the teardown report
                totals = records[-1]["result"]["total"]
                props = item.user_properties
                props.extend((f"minigram_{key}", totals.get(key)) for key in JUNIT_METRICS)
                props.append(("minigram_stage", records[-1]["stage"]))
                props.append(("minigram_users",
                              records[-1]["result"].get("workload", {}).get("users")))
                props.append(("minigram_verdict", rep.outcome))
        rep.minigram = {"role": role,
                        "records": records if rep.when == "call" else []}
        return rep

    def _leader(self) -> str | None:
        """The worker that reports for a perf test: the lowest-numbered live one."""
        if self.shared is None:
            return None
        live = [w for w in self.participants if not self.shared.worker_dead(w)]
        return live[0] if live else None

    def _static_role(self) -> str:
        if self.shared is None:
            return "single"
        return "leader" if self._leader() == self.wid else "follower"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = getattr(report, "minigram", None)
        if self.is_worker or not isinstance(info, dict) or info.get("role") == "follower":
            return
        for rec in info.get("records", []):
            self.records.append(PerfRecord.from_dict(rec, report.outcome))

    def stage_config(self) -> dict[str, Any]:
        servers: dict[str, Any] = {}
        if self._pool is not None:
            servers = {st.stage: {"backends": st.backends, "seed": st.seed}
                       for st in self._pool.running(HEAD)}
        return {"stages": list(self.settings.stages), "servers": servers}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not self.records:
            return
        run = new_run(collect_environment(self.stage_config()),
                      unique_tests([r.to_dict() for r in self.records]))
        duet = [t for t in run["tests"] if t.get("duet_baseline") is not None]
        if duet:
            self.comparison = compare_runs(
                {**duet_baseline_run(duet), "environment": run["environment"]},
                {**run, "tests": duet}, self.tolerances, baseline_source=self.duet_source)
        elif self.baseline is not None:
            self.comparison = compare_runs(self.baseline, run, self.tolerances,
                                           baseline_source=self.baseline_source)
        s = self.settings
        outputs = Outputs.from_env(results=s.results, storage=s.storage, save=s.save,
                                   autosave=s.autosave, benchmark_json=s.benchmark_json,
                                   report=s.report)
        self.written = write_outputs(run, outputs, baseline=self.baseline,
                                     comparison=self.comparison)
        self.config.hook.pytest_minigram_run_finished(config=self.config, run=run)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not self.records:
            return
        terminalreporter.write_sep("=", "minigram perf summary")
        for line in table(self.records):
            terminalreporter.write_line(line)
        if self.comparison is not None:
            terminalreporter.write_sep("-", "against the baseline "
                                       f"{self.comparison.baseline_source}")
            for line in format_table(self.comparison).splitlines():
                terminalreporter.write_line(line)
        for line in self.written:
            terminalreporter.write_line(f"minigram: wrote {line}")
        if any(r.result.get("generator", {}).get("saturated") for r in self.records):
            terminalreporter.write_line(
                "warning: the load generator was saturated (>90% CPU) in some tests; their "
                "latency figures are not trustworthy. Use fewer users or more xdist workers.",
                yellow=True)


def duet_baseline_run(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run document of the baselines measured side by side with ``entries``."""
    return new_run({}, [{**e, "result": e["duet_baseline"], "slo": [], "comparison": [],
                         "duet_baseline": None} for e in entries])


def _server_key(stage: str, side: str) -> str:
    """The key of a stage's servers in the controller's server file shared with workers."""
    return stage if side == HEAD else f"{stage}@{side}"


def _join(rounds: list[Result], targets: list[str]) -> Result:
    return rounds[0] if len(rounds) == 1 else concat(rounds, targets)


def _pct(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1%}"


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _LoadWatch:
    """Ends a load early when the server under test or a peer xdist worker dies.

    The load then stops within a fraction of a second instead of running its whole duration
    against a dead server or for a merge that cannot happen; the caller reports why.
    """

    POLL = 0.2

    def __init__(self, session: MinigramSession, server: Any, peers: list[str],
                 pids: list[int] | None = None) -> None:
        self.session = session
        self.server = server
        self.pids = list(pids or [])  # more processes the load needs (the duet baseline's)
        self.peers = [w for w in peers if w != session.wid]
        self.stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minigram-load-watch",
                                        daemon=True)

    def __enter__(self) -> _LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        shared = self.session.shared
        while not self._done.wait(self.POLL):
            if _TERMINATING.is_set():
                self.stop.set()
                return
            peer_died = shared is not None and any(shared.worker_dead(w) for w in self.peers)
            if (peer_died or not self.session.server_alive(self.server)
                    or not all(_pid_alive(pid) for pid in self.pids)):
                self.stop.set()
                return

    def raise_if_interrupted(self, result: Result) -> None:
        """The engine turns Ctrl-C into a partial result; the session must stop instead."""
        if _TERMINATING.is_set():
            raise KeyboardInterrupt("signal SIGTERM")
        if result.interrupted and not self.stop.is_set():
            raise KeyboardInterrupt("the load run was interrupted")


def targets_minigram(item: pytest.Item) -> bool:
    """False when a conftest overrides ``minigram_target``: the load goes to another service."""
    # pytest has no public "which fixture wins here" API; FixtureManager.getfixturedefs is
    # the closest. If it ever changes, fall back to treating the target as Minigram.
    try:
        manager = item.config.pluginmanager.get_plugin("funcmanage")
        defs = manager.getfixturedefs("minigram_target", item)
    except Exception:
        return True
    return not defs or getattr(defs[-1].func, "__module__", "") == "pytest_minigram.fixtures"


def _is_follower_report(report: Any) -> bool:
    info = getattr(report, "minigram", None)
    return isinstance(info, dict) and info.get("role") == "follower"


_TERMINATING = threading.Event()


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    # Raised inside uvloop's internals, the exception is only logged (MagicStack/uvloop#94):
    # the load watch sees the event, ends the load, and raises it again.
    _TERMINATING.set()
    raise KeyboardInterrupt(f"signal {signum}")


def _kind(item: pytest.Item) -> str:
    for name in ("stress", "breaking", "diagnostic"):
        if item.get_closest_marker(name) is not None:
            return name
    return "load"


class XdistHooks:
    """Controller-side xdist wiring: a shared directory, the scheduler, the servers."""

    def __init__(self, session: MinigramSession) -> None:
        self.session = session
        self._shared: distributed.SharedDir | None = None

    @property
    def shared(self) -> distributed.SharedDir:
        if self._shared is None:
            self._shared = distributed.SharedDir(self.session.tmpdir / "xdist")
            self._shared.path.mkdir(parents=True, exist_ok=True)
        return self._shared

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        dsession = session.config.pluginmanager.getplugin("dsession")
        if dsession is not None:
            # Every worker ran the perf test and saw the same merged result; only the
            # leader's reports speak for it.
            distributed.drop_reports(dsession, _is_follower_report)

    def pytest_configure_node(self, node: Any) -> None:
        self.session.is_controller = True
        node.workerinput["minigram_dir"] = str(self.shared.path)

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") != "load":
            return None

        def before_dispatch(perf: dict[str, str | None], stages: set[str]) -> None:
            started = time.monotonic()
            self.shared.write_servers(self.session.start_servers(stages))
            if stages:
                log(f"minigram servers ready in {time.monotonic() - started:.1f}s")

        return distributed.make_scheduler(config, log, self.shared, before_dispatch)


def register_journeys(config: pytest.Config) -> None:
    for journeys in config.hook.pytest_minigram_add_journeys(config=config):
        for journey in journeys or ():
            register_journey(journey)
