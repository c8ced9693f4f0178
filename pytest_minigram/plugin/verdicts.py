"""A perf test's verdict: its thresholds, its gate against the baseline, its JUnit properties.

The verdict is set on the call report, so that the terminal, the exit code and JUnit XML
agree. Under xdist every worker runs a perf test and judges the same merged result; the
controller reports it once (see `xdist`). A session that collected perf tests and ran none
fails.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_minigram.gate import parse_tolerance
from pytest_minigram.plugin import xdist
from pytest_minigram.plugin.baseline import Baseline
from pytest_minigram.plugin.conductor import RECORDS
from pytest_minigram.record import PerfRecord, unique_entries

JUNIT_METRICS = ("throughput", "error_rate", "p50", "p95", "p99", "apdex_score", "count")


class Verdicts:
    def __init__(self, baseline: Baseline, worker: xdist.XdistWorker | None,
                 controller: Callable[[], xdist.XdistController | None]) -> None:
        self.baseline = baseline
        self.worker = worker
        self.controller = controller
        self.none_ran = ""
        self.records: list[PerfRecord] = []  # on the controller (or without xdist)
        self.collected_perf: set[str] = set()  # without xdist; the controller asks the workers
        self.ran_perf: set[str] = set()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        rep = yield
        if item.get_closest_marker("perf") is None and RECORDS not in item.stash:
            return rep
        records = item.stash.get(RECORDS, [])
        if rep.when == "call":
            self._judge(item, rep, records)
        setattr(rep, xdist.REPORT_ATTR, {
            "perf": item.get_closest_marker("perf") is not None,
            "records": [r.to_entry() for r in records] if rep.when == "call" else []})
        return rep

    def _judge(self, item: pytest.Item, rep: pytest.TestReport,
               records: list[PerfRecord]) -> None:
        regressions: list[str] = []
        unjudged: list[str] = []
        for record, entry in zip(records, unique_entries(records), strict=True):
            found, blind = self.baseline.judge(record, entry)
            regressions += found
            unjudged += blind
        unbased = next(filter(None, map(self.baseline.why_none, records)), None)
        source = self.baseline.source_of(records[0]) if records else ""
        if unbased and rep.passed:
            rep.outcome = "failed"
            rep.longrepr = f"--minigram-compare-fail: no baseline to gate on: {unbased}"
        elif regressions and rep.passed:
            rep.outcome = "failed"
            rep.longrepr = (f"performance regression against the baseline ({source}):\n  "
                            + "\n  ".join(regressions))
        elif unjudged and rep.passed and not self.baseline.warn_only:
            rep.outcome = "failed"
            rep.longrepr = (f"the regression gate cannot judge this test against the baseline "
                            f"({source}):\n  " + "\n  ".join(unjudged)
                            + "\n(--minigram-compare-warn reports this as a warning instead)")
        for record in records:
            record.verdict = rep.outcome
        if records:  # junitxml writes the properties from the teardown report
            last = records[-1]
            totals = last.totals
            props = item.user_properties
            props.extend((f"minigram_{key}", totals.get(key)) for key in JUNIT_METRICS)
            props.append(("minigram_stage", last.stage))
            props.append(("minigram_users", last.result.workload.get("users")))
            props.append(("minigram_verdict", rep.outcome))
            for change in last.comparison:
                if change.get("tolerance"):
                    name = f"minigram_gate_{change['metric']}"
                    props.append((f"{name}_tolerance", change["tolerance"]))
                    seen = change.get("detectable")
                    props.append((f"{name}_detectable", "n/a" if seen is None else
                                  parse_tolerance(change["tolerance"]).format_amount(seen)))
                    props.append((f"{name}_status", "regression" if change.get("regression")
                                  else "cannot judge" if change.get("cannot_judge") else "ok"))

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.collected_perf = set(xdist.perf_ids(items))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        info = getattr(report, xdist.REPORT_ATTR, None)
        if self.worker is not None or not isinstance(info, dict):
            return
        if report.when == "call" or report.outcome != "passed":
            self.ran_perf.add(report.nodeid)
        for entry in info.get("records", []):
            record = PerfRecord.from_entry(entry)
            record.verdict = report.outcome  # the controller's verdict, over every worker
            self.records.append(record)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker is not None:
            return
        controller = self.controller()
        collected = (controller.collected_perf() if controller is not None and controller.active
                     else self.collected_perf)
        if collected and not self.ran_perf:
            self.none_ran = (f"{len(collected)} perf test(s) were collected and none ran: "
                             "nothing was judged")
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.none_ran:
            terminalreporter.write_line(f"minigram: ERROR: {self.none_ran}", red=True,
                                        bold=True)
