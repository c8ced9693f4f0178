"""Watching a load from pytest: the live terminal line, the live page, Prometheus.

On the xdist controller (or the only process) one `LiveSession` keeps a `LiveState`, fed by
the coordinator's merged seconds (it is the coordinator's `LoadObserver`) or, without xdist,
by the engine's own per-second deltas (`LocalLoad`). A ticker thread writes the line through
pytest's terminal reporter: rewritten in place once a second on a TTY, a plain line every
few seconds otherwise. ``-q`` and ``--minigram-quiet`` silence it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_minigram.coordination import LoadKey
from pytest_minigram.live.state import LiveLoad, LiveState
from pytest_minigram.load import Result
from pytest_minigram.plugin.options import Settings

LIVE = pytest.StashKey["LiveSession | None"]()
TTY_EVERY = 1.0  # seconds between two rewrites of the line on a terminal
PLAIN_EVERY = 3.0  # seconds between two plain lines (CI logs)


def stopped_message(result: Result, planned: float | None) -> str:
    of = f" of {planned:g} s" if planned else ""
    return (f"stopped from the live page after {result.duration:.1f} s{of}: the result is "
            "partial and the test is not judged")


class LocalLoad:
    """A load run in this process: the engine's callbacks feed the state; ``stop`` is set
    when someone presses stop on the live page."""

    def __init__(self, session: LiveSession, load: LiveLoad) -> None:
        self.session = session
        self.load = load
        self.stop = threading.Event()
        self.stopped = ""

    def on_start(self, at: float) -> None:
        self.load.started = at

    def on_second(self, delta: dict[str, Any]) -> None:
        self.session.state.second(self.load.id, delta)

    def still_running(self) -> bool:
        return not self.stop.is_set()

    def finish(self, result: Result | None, reason: str = "") -> None:
        self.session._local.pop(self.load.test, None)
        outcome = "stopped" if self.stopped else "failed" if result is None else "finished"
        self.session.state.finish(self.load.id, outcome, self.stopped or reason)


class LiveSession:
    """The live view of one session, on the controller; registered as a plugin."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.state = LiveState()
        self.terminal = not settings.quiet and config.get_verbosity() >= 0
        self.stop_remote: Callable[[str, str], bool] | None = None  # the coordinator's stop
        self._local: dict[str, LocalLoad] = {}
        self._calls: dict[str, int] = {}
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None
        self.page: Any = None
        self.prometheus: Any = None
        if settings.live is not None:
            from pytest_minigram.live.page import LivePage

            self.page = LivePage(self.state, self.request_stop, *settings.live).start()
        if settings.prometheus is not None:
            try:
                from pytest_minigram.live.prometheus import PrometheusEndpoint
            except ImportError as exc:
                raise pytest.UsageError(
                    f"--minigram-prometheus needs prometheus-client ({exc}): pip install "
                    "prometheus-client, or pytest-minigram[minigram]") from None

            self.prometheus = PrometheusEndpoint(self.state, *settings.prometheus).start()

    # --- the coordinator's LoadObserver (xdist) ------------------------------------------
    def load_started(self, key: LoadKey, info: dict[str, Any], participants: tuple[str, ...],
                     expected_duration: float | None, start_at: float) -> None:
        self.state.begin(key[0], key[1], stage=str(info.get("stage") or ""),
                         workload=info.get("workload") or {}, planned=expected_duration,
                         workers=len(participants), started=start_at)

    def load_second(self, key: LoadKey, row: dict[str, Any], extra: dict[str, Any]) -> None:
        self.state.second(key, row, extra)

    def load_finished(self, key: LoadKey, ok: bool, reason: str, stopped: bool) -> None:
        self.state.finish(key, "stopped" if stopped else "finished" if ok else "failed",
                          reason)

    # --- a load in this process ----------------------------------------------------------
    def local(self, test: str, stage: str, workload: Mapping[str, Any],
              planned: float | None) -> LocalLoad:
        call = self._calls.get(test, 0)
        self._calls[test] = call + 1
        load = LocalLoad(self, self.state.begin(test, call, stage=stage, workload=workload,
                                                planned=planned))
        self._local[test] = load
        return load

    def request_stop(self, test: str) -> bool:
        """The live page's stop button: end ``test``'s running load. False if none runs."""
        running = [ld for ld in self.state.running() if ld.test == test]
        if not running:
            return False
        reason = f"stopped from the live page after {running[-1].elapsed():.0f} s"
        local = self._local.get(test)
        if local is not None:
            local.stopped = reason
            local.stop.set()
            return True
        return self.stop_remote is not None and self.stop_remote(test, reason)

    # --- pytest hooks --------------------------------------------------------------------
    def pytest_report_header(self) -> list[str]:
        lines = []
        if self.page is not None:
            lines.append(f"minigram: live page at {self.page.url}")
        if self.prometheus is not None:
            lines.append(f"minigram: Prometheus metrics at {self.prometheus.url}")
        return lines

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.terminal and reporter is not None:
            self._ticker = threading.Thread(target=self._tick, args=(reporter,),
                                            name="minigram-live-line", daemon=True)
            self._ticker.start()

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join(5)
        for server in (self.page, self.prometheus):
            if server is not None:
                server.close()

    def _tick(self, reporter: Any) -> None:
        tty = bool(getattr(reporter, "isatty", False))
        every = TTY_EVERY if tty else PLAIN_EVERY
        shown: dict[tuple[str, int], float] = {}  # load -> when its line was last written
        while not self._done.wait(0.25):
            now = time.time()
            for load in self.state.loads():
                last = shown.get(load.id)
                if load.running:
                    if load.seconds and (last is None or now - last >= every):
                        if last is None and tty:
                            reporter.ensure_newline()
                        self._write(reporter, self.state.line(load.id), tty)
                        shown[load.id] = now
                elif last is not None and last > 0:  # its last line, with the outcome
                    self._write(reporter, self.state.line(load.id), tty, final=True)
                    shown[load.id] = -1.0

    def _write(self, reporter: Any, line: str, tty: bool, final: bool = False) -> None:
        if tty:
            reporter.rewrite(line, bold=not final)
            if final:
                reporter.write("\n")
        else:
            reporter.write_line(line)
