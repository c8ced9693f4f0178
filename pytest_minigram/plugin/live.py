"""Watching a load from pytest: the live terminal line, the live page, Prometheus.

On the xdist controller (or the only process) one `LiveSession` keeps a `LiveState`, fed by
the coordinator's merged seconds (it is the coordinator's `LoadObserver`) or, without xdist,
by the engine's own per-second deltas (`LocalLoad`). `LiveLine` writes the line through
pytest's terminal reporter: rewritten in place once a second on a TTY, a plain line every
few seconds otherwise. ``-q`` and ``--minigram-quiet`` silence it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import pytest

from pytest_minigram.coordination import LoadKey
from pytest_minigram.live.state import LiveLoad, LiveState, LoadId
from pytest_minigram.load import Result
from pytest_minigram.plugin.options import Settings

LIVE = pytest.StashKey["LiveSession | None"]()
TTY_EVERY = 1.0  # seconds between two rewrites of the line on a terminal
PLAIN_EVERY = 3.0  # seconds between two plain lines (CI logs)


def stopped_message(result: Result, planned: float | None) -> str:
    of = f" of {planned:g} s" if planned else ""
    return (f"stopped from the live page after {result.duration:.1f} s{of}: the result is "
            "partial and the test is not judged")



def _claims_terminal(optional: bool = False) -> Any:
    @pytest.hookimpl(wrapper=True, tryfirst=True, optionalhook=optional)
    def hook(self: LiveSession) -> Generator[None, object, object]:
        with self.claimed():
            return (yield)

    return hook


class LiveLine:
    """The live line, written through pytest's terminal reporter with capture suspended (as
    pytest's live logging does), so that a load run inside a test shows too.

    On a TTY the line is rewritten in place once a second and left open (no newline) until
    its load ends or pytest writes: every hook through which pytest writes claims the
    terminal first (`claimed`). Otherwise it is a plain line every few seconds. One lock
    keeps the ticker thread (xdist) from writing in the middle of pytest's own output.
    """

    def __init__(self, reporter: Any, capture: Any) -> None:
        self.reporter = reporter
        self.capture = capture
        self.tty = bool(getattr(reporter, "isatty", False))
        self.every = TTY_EVERY if self.tty else PLAIN_EVERY
        self.lock = threading.RLock()
        self.open = False  # a TTY line is on screen without its newline
        self.shown: dict[LoadId, float] = {}  # load -> when its line was written; -1: ended

    def refresh(self, state: LiveState, load_id: LoadId) -> None:
        with self.lock:
            load = state.get(load_id)
            if load is None:
                return
            now = time.monotonic()
            last = self.shown.get(load_id)
            if load.running:
                if load.seconds and (last is None or now - last >= self.every):
                    self._write(state.line(load_id), final=False)
                    self.shown[load_id] = now
            elif last is not None and last >= 0:  # shown while it ran: its outcome too
                self._write(state.line(load_id), final=True)
                self.shown[load_id] = -1.0

    @contextlib.contextmanager
    def claimed(self, state: LiveState) -> Iterator[None]:
        with self.lock:
            for load_id, last in list(self.shown.items()):
                load = state.get(load_id)
                if last >= 0 and load is not None and not load.running:
                    self.refresh(state, load_id)
            if self.open:
                self._suspended(lambda: self.reporter.write("\n"))
                self.open = False
            yield

    def _write(self, line: str, final: bool) -> None:
        reporter = self.reporter

        def write() -> None:
            if self.tty:
                if not self.open:
                    reporter.ensure_newline()
                # a running line must fit, or "\r" would not get back to its start
                width = len(line) if final else max(20, reporter._tw.fullwidth - 1)
                reporter.rewrite(line[:width], erase=True, bold=not final)
                if final:
                    reporter.write("\n")
                self.open = not final
            else:
                reporter.ensure_newline()
                reporter.write_line(line)

        self._suspended(write)

    def _suspended(self, write: Callable[[], None]) -> None:
        if self.capture is None:
            write()
            return
        with self.capture.global_and_fixture_disabled():
            write()


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
        self.session.refresh(self.load.id)

    def still_running(self) -> bool:
        return not self.stop.is_set()

    def finish(self, result: Result | None, reason: str = "") -> None:
        self.session._local.pop(self.load.test, None)
        outcome = "stopped" if self.stopped else "failed" if result is None else "finished"
        ended = None if result is None else self.load.started + result.duration
        self.session.state.finish(self.load.id, outcome, self.stopped or reason, ended)
        self.session.refresh(self.load.id)


class LiveSession:
    """The live view of one session, on the controller; registered as a plugin."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.state = LiveState()
        self.terminal = not settings.quiet and config.get_verbosity() >= 0
        self.stop_remote: Callable[[str, str], bool] | None = None  # the coordinator's stop
        self._local: dict[str, LocalLoad] = {}
        self._calls: dict[str, int] = {}
        self._local_ids: set[LoadId] = set()
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None
        self.line: LiveLine | None = None
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
        self._start_ticker()

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
        self._local_ids.add(load.load.id)
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
            self.line = LiveLine(reporter, self.config.pluginmanager.get_plugin("capturemanager"))

    # Every hook through which pytest or xdist writes to the terminal while loads run takes
    # the terminal first: a finished load's last line is written, an open line is ended.
    pytest_runtest_logstart = _claims_terminal()
    pytest_runtest_logreport = _claims_terminal()
    pytest_runtest_logfinish = _claims_terminal()
    pytest_collectreport = _claims_terminal()
    pytest_sessionfinish = _claims_terminal()
    pytest_testnodedown = _claims_terminal(optional=True)
    pytest_testnodeready = _claims_terminal(optional=True)

    def claimed(self) -> contextlib.AbstractContextManager[None]:
        if self.line is None:
            return contextlib.nullcontext()
        return self.line.claimed(self.state)

    def refresh(self, load_id: LoadId) -> None:
        """Write ``load_id``'s line if it is due (from the thread that advanced it)."""
        if self.line is not None:
            self.line.refresh(self.state, load_id)

    def _start_ticker(self) -> None:
        if self.line is not None and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="minigram-live-line",
                                            daemon=True)
            self._ticker.start()

    def close(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join(5)
        for server in (self.page, self.prometheus):
            if server is not None:
                server.close()

    def _tick(self) -> None:
        """The coordinator's loads (xdist): their seconds arrive on the coordinator's thread,
        which must never wait for the terminal, so this thread writes their lines."""
        while not self._done.wait(0.25):
            for load in self.state.loads():
                if load.id not in self._local_ids:
                    self.refresh(load.id)

