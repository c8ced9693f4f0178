"""The report in a real browser: headless Debian Chromium driven over the DevTools protocol.

Skips when /usr/bin/chromium is missing, unless CI is set (then a missing browser fails).
Set MINIGRAM_SCREENSHOTS=1 to also copy the screenshot to reports/screenshots/.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minigram.report.render import write_report

CHROMIUM = Path(os.environ.get("MINIGRAM_CHROMIUM", "/usr/bin/chromium"))
DATA = Path(__file__).parents[1] / "unit" / "data" / "report"
ROOT = Path(__file__).parents[2]
CHART_IDS = ["chart-throughput", "chart-p95", "chart-distribution", "chart-errors",
             "chart-actions", "chart-timing"]


class CDP:
    """A minimal DevTools-protocol session over one page's websocket."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=20, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def eval(self, expression: str) -> Any:
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"JS error: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.eval(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {expression}")
            time.sleep(0.1)

    def close(self) -> None:
        self.ws.close()


def _websocket_url(profile: Path, proc: subprocess.Popen[bytes]) -> str:
    import urllib.request

    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("chromium did not write DevToolsActivePort")
        time.sleep(0.05)
    port = port_file.read_text().split()[0]
    # the page target, not the browser: Network/Runtime/Log events live on the page
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
        targets = json.load(r)
    page = next(t for t in targets if t["type"] == "page")
    return str(page["webSocketDebuggerUrl"])


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[CDP, Path]]:
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); set CI to fail")
    pytest.importorskip("websocket", reason="websocket-client is in the 'test' extra")
    profile = tmp_path / "profile"
    profile.mkdir()
    proc = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "--window-size=1300,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cdp: CDP | None = None
    try:
        cdp = CDP(_websocket_url(profile, proc))
        yield cdp, tmp_path
    finally:
        if cdp is not None:
            cdp.close()
        try:  # the whole group: chromium forks renderer, zygote and GPU helpers
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _render(tmp_path: Path) -> Path:
    run = json.loads((DATA / "run.json").read_text())
    baseline = json.loads((DATA / "baseline.json").read_text())
    comparison = json.loads((DATA / "comparison.json").read_text())
    return write_report(tmp_path / "report.html", [run], baseline, comparison)


def _table(cdp: CDP) -> dict[str, dict[str, str]]:
    return cdp.eval("""(() => {
      const out = {};
      document.querySelectorAll('#stage-comparison tbody tr').forEach(tr => {
        const row = {};
        tr.querySelectorAll('td[data-stage] .v').forEach(
          v => row[v.parentElement.dataset.stage] = v.textContent.trim());
        out[tr.dataset.metric] = row;
      });
      return out;
    })()""")


def _inked_pixels(cdp: CDP, selector: str) -> list[int]:
    """Non-transparent pixels per canvas matching selector: 0 means nothing was drawn."""
    return cdp.eval(f"""Array.from(document.querySelectorAll({json.dumps(selector)})).map(c => {{
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return c.width * c.height > 0 ? n : 0;
    }})""")


def _screenshot(cdp: CDP, tmp_path: Path, name: str) -> Path:
    height = cdp.eval("document.documentElement.scrollHeight")
    cdp.call("Emulation.setDeviceMetricsOverride", width=1300, height=int(height),
             deviceScaleFactor=1, mobile=False)
    png = base64.b64decode(cdp.call("Page.captureScreenshot", format="png",
                                    captureBeyondViewport=True)["data"])
    shot = tmp_path / name
    shot.write_bytes(png)
    if os.environ.get("MINIGRAM_SCREENSHOTS"):
        keep = ROOT / "reports" / "screenshots"
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep / name)
    return shot


def page_problems(events: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    """Console errors and warnings, uncaught exceptions and log errors among CDP events."""
    console = [e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"
               and e["params"]["type"] in ("error", "warning", "assert")]
    exceptions = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"]
    logs = [e["params"]["entry"] for e in events if e.get("method") == "Log.entryAdded"
            and e["params"]["entry"]["level"] in ("error", "warning")]
    return console, exceptions, logs


def requested_urls(events: list[dict[str, Any]]) -> set[str]:
    return {e["params"]["request"]["url"] for e in events
            if e.get("method") == "Network.requestWillBeSent"}


def test_report_renders_offline_with_charts(browser: tuple[CDP, Path]) -> None:
    cdp, tmp_path = browser
    page = _render(tmp_path)
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable")
    cdp.call("Page.navigate", url=page.as_uri())
    cdp.wait_for("document.readyState === 'complete' && document.body.dataset.chartsReady")

    # every chart in the overview drew something
    inked = _inked_pixels(cdp, ", ".join(f"#{c}" for c in CHART_IDS))
    assert len(inked) == len(CHART_IDS)
    assert all(n > 500 for n in inked), dict(zip(CHART_IDS, inked, strict=True))

    table = _table(cdp)
    assert table["max_users"] == {"1": "6 users (4–8)", "1.5": "42 users (38–46)",
                                  "2": "115 users (105–125)"}
    assert table["error_rate"]["1"] == "56%" and table["error_rate"]["2"] == "0%"
    assert table["p95"] == {"1": "2.08 s", "1.5": "117 ms", "2": "77.2 ms"}
    overall = cdp.eval("document.querySelector('#stage-comparison tr[data-metric=p95] .overall')"
                       ".textContent.trim()")
    assert overall == "27× better"
    findings = cdp.eval("Array.from(document.querySelectorAll('#findings li'))"
                        ".map(li => li.textContent)")
    assert ("stage 1: 56% of requests failed with 503 database is locked in test_realistic[1] "
            "at 20 users") in findings
    assert cdp.eval("document.querySelectorAll('#comparison tr.regression').length") == 1

    # the switcher shows another multi-stage test's comparison in place of the lead's
    visible = ("Array.from(document.querySelectorAll('.stage-comparison'))"
               ".filter(d => !d.hidden).map(d => d.dataset.group)")
    assert cdp.eval(visible) == ["tests/perf/test_realistic.py::test_realistic"]
    options = cdp.eval("Array.from(document.querySelectorAll('#stage-comparison-test option'))"
                       ".map(o => o.value)")
    assert "tests/perf/test_feed.py::test_feed_rate" in options
    cdp.eval("(() => { const s = document.getElementById('stage-comparison-test');"
             " s.value = 'tests/perf/test_feed.py::test_feed_rate';"
             " s.dispatchEvent(new Event('change')); })()")
    assert cdp.eval(visible) == ["tests/perf/test_feed.py::test_feed_rate"]
    feed_p95 = cdp.eval("document.querySelector('.stage-comparison:not([hidden]) "
                        "tr[data-metric=p95] td').textContent.trim()")
    assert feed_p95 and feed_p95 != table["p95"]["1"]
    cdp.eval("(() => { const s = document.getElementById('stage-comparison-test');"
             " s.value = s.options[0].value; s.dispatchEvent(new Event('change')); })()")

    # per-test charts are drawn lazily, when a row is opened
    cdp.eval("document.querySelector('tbody.test .summary-row').click()")
    cdp.wait_for("document.querySelector('tbody.test .detail canvas[data-drawn]')")
    detail = _inked_pixels(cdp, "tbody.test:first-of-type .detail canvas")
    assert detail and all(n > 300 for n in detail), detail
    cdp.eval("document.querySelector('tbody.test .summary-row').click()")

    shot = _screenshot(cdp, tmp_path, "minigram-report.png")
    assert shot.stat().st_size > 50_000

    events = cdp.events
    problems = page_problems(events)
    assert not any(problems), problems
    requested = requested_urls(events)
    assert requested == {page.as_uri()}, requested
