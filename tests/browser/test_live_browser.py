"""The live page in headless Chromium while a real perf test runs: charts update, the stop
button ends the load early, and the test fails as stopped with its partial record."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_report_browser import (  # noqa: F401  (browser: the fixture)
    CDP,
    browser,
    page_problems,
    requested_urls,
)

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from plugin_helpers import TARGET_CONFTEST  # noqa: E402

TESTS = '''
import time
import pytest

@pytest.mark.perf
def test_long_load(minigram_load):
    minigram_load("ping", users=3, duration=40)

def test_after():
    time.sleep(4)  # the page lives on while the browser reads the verdict
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_page_updates_and_stops_the_load(browser: tuple[CDP, Path]) -> None:  # noqa: F811
    cdp, tmp_path = browser
    (tmp_path / "conftest.py").write_text(TARGET_CONFTEST)
    (tmp_path / "test_live_page.py").write_text(TESTS)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-v",
         f"--minigram-live=127.0.0.1:{port}", "--minigram-results=run.json",
         "test_live_page.py"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable")
        cdp.call("Page.navigate", url=url)
        cdp.wait_for("document.readyState === 'complete'")
        cdp.wait_for("!document.getElementById('stop').hidden", timeout=30)
        points = []
        for _ in range(2):  # the req/s chart grows, update after update
            seen = cdp.eval("+document.body.dataset.updates")
            cdp.wait_for(f"+document.body.dataset.updates > {seen}")
            points.append(cdp.eval("window.minigramLive['chart-rps'].data.datasets[0]"
                                   ".data.length"))
        cdp.wait_for(f"window.minigramLive['chart-rps'].data.datasets[0].data.length > "
                     f"{points[-1]}", timeout=10)
        assert points[-1] >= 1, points
        cdp.eval("document.getElementById('stop').click()")
        cdp.wait_for("document.body.dataset.stopStatus === '200'")
        cdp.wait_for("!!document.querySelector('#finished tr[data-outcome=stopped]')",
                     timeout=20)
        events = list(cdp.events)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert "FAILED test_live_page.py::test_long_load" in out, out
    assert "stopped from the live page after" in out and "of 40 s" in out, out
    (entry,) = json.loads((tmp_path / "run.json").read_text())["tests"]
    assert entry["stopped"] is True and entry["verdict"] == "failed"
    assert 0 < entry["result"]["duration"] < 30 and entry["result"]["interrupted"]
    assert entry["result"]["total"]["count"] > 0
    problems = page_problems(events)
    assert not any(problems), problems
    requested = requested_urls(events)
    assert requested and all(u.startswith(url) for u in requested), requested
