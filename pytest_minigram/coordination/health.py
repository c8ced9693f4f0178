"""Liveness of the servers under test, checked over HTTP from the controller.

The servers may be on other machines than the controller, so their pids mean nothing here:
a server is alive while ``GET <url>`` answers with a status below 500 within the timeout
(e.g. ``http://10.0.0.5:8000/healthz``). :class:`HealthWatch` polls a list of such URLs while
a load runs and reports the first one that stops answering, so the coordinator can end the
load for all workers with a *server died* verdict.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

__all__ = ["HealthWatch", "check_health"]

# no proxies: the environment's http_proxy must not decide whether a server is alive
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_health(url: str, timeout: float = 2.0) -> str | None:
    """None when ``GET url`` answers below 500 within ``timeout`` seconds, else why not."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (OSError, ValueError) as exc:  # refused, reset, timeout, DNS, malformed URL
        reason = getattr(exc, "reason", None) or exc
        return f"{type(exc).__name__}: {reason}"
    return None if status < 500 else f"HTTP {status}"


class HealthWatch:
    """Poll ``urls`` every ``interval`` s from a thread; call ``on_failure(reason)`` once.

    A URL fails after ``failures`` failed checks in a row (one check waits at most
    ``timeout``), so one dropped request does not end a load; the reason names the URL.
    """

    def __init__(self, urls: Sequence[str], on_failure: Callable[[str], None], *,
                 interval: float = 0.5, timeout: float = 2.0, failures: int = 2) -> None:
        self.urls = list(dict.fromkeys(urls))
        self.on_failure = on_failure
        self.interval = interval
        self.timeout = timeout
        self.failures = max(1, failures)
        self.failed: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minigram-health", daemon=True)

    def start(self) -> HealthWatch:
        if self.urls:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling; returns at once (a check in flight ends within ``timeout``)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> HealthWatch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join(self.timeout + 1.0)

    def _run(self) -> None:
        strikes = dict.fromkeys(self.urls, 0)
        while not self._stop.wait(self.interval):
            for url in self.urls:
                why = check_health(url, self.timeout)
                if self._stop.is_set():
                    return
                strikes[url] = 0 if why is None else strikes[url] + 1
                if strikes[url] >= self.failures:
                    self.failed = (f"server died: {url} failed {strikes[url]} health "
                                   f"check(s) in a row, last: {why}")
                    self.on_failure(self.failed)
                    return
