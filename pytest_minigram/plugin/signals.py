"""SIGTERM as Ctrl-C, and the watch that ends a load early when what it needs is gone."""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from pytest_minigram.load import Result
from pytest_minigram.server import stop_all

TERMINATING = threading.Event()


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    # Raised inside uvloop's internals, the exception is only logged (MagicStack/uvloop#94):
    # the load watch sees the event, ends the load, and raises it again.
    TERMINATING.set()
    raise KeyboardInterrupt(f"signal {signum}")


class SigtermAsInterrupt:
    """While installed, SIGTERM interrupts the session like Ctrl-C, so fixtures and servers
    are torn down; ``atexit`` is the last net for any server still running."""

    def __init__(self) -> None:
        self._old: Any = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        TERMINATING.clear()  # a SIGTERM of an earlier in-process session is over
        self._old = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        atexit.register(stop_all)

    def uninstall(self) -> None:
        if self._old is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._old)
            self._old = None


class LoadWatch:
    """Ends a load early when one of ``still_ok`` turns false (a server or a peer died).

    The load then stops within a fraction of a second instead of running its whole duration
    against a dead server or for a merge that cannot happen; the caller reports why.
    """

    POLL = 0.2

    def __init__(self, still_ok: list[Callable[[], bool]]) -> None:
        self.still_ok = still_ok
        self.stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minigram-load-watch",
                                        daemon=True)

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.POLL):
            if TERMINATING.is_set() or not all(ok() for ok in self.still_ok):
                self.stop.set()
                return

    def raise_if_interrupted(self, result: Result) -> None:
        """The engine turns Ctrl-C into a partial result; the session must stop instead."""
        if TERMINATING.is_set():
            raise KeyboardInterrupt("signal SIGTERM")
        if result.interrupted and not self.stop.is_set():
            raise KeyboardInterrupt("the load run was interrupted")
