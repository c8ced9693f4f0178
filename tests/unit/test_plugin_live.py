"""The live line in real pytest sessions (xdist too), its silencing, the options' errors,
and the Prometheus endpoint scraped while a load runs."""

from __future__ import annotations

import json
import re

import pytest
from plugin_helpers import TARGET_CONFTEST

pytest_plugins = ["pytester"]

LOAD_TEST = '''
import pytest

@pytest.mark.perf
def test_live_load(minigram_load):
    minigram_load("ping", users=4, duration=5)
'''

LINE = re.compile(r"minigram live: test_live\.py::test_live_load .*?\| ([0-9.]+) req/s \| "
                  r"requests (\d+) \|")


def _project(pytester: pytest.Pytester, body: str = LOAD_TEST) -> None:
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile(test_live=body)


def test_plain_live_lines_merged_over_two_workers(pytester: pytest.Pytester) -> None:
    _project(pytester)
    res = pytester.runpytest_subprocess("-n", "2", "-v", "-p", "no:cacheprovider",
                                        "--minigram-results=run.json", timeout=180)
    out = res.stdout.lines
    res.assert_outcomes(passed=1)
    verdict = next(i for i, line in enumerate(out) if "PASSED test_live.py::test_live_load" in line)
    lines = [(i, LINE.search(line)) for i, line in enumerate(out) if LINE.search(line)]
    running = [(i, m) for i, m in lines if not out[i].endswith("| finished")]
    assert running and all(i < verdict for i, _ in lines), "\n".join(out)
    assert all("| 2 workers" in out[i] for i, _ in lines)  # the controller's merged view
    # not a TTY: a plain line every few seconds, not one a second
    assert len(running) <= 4, "\n".join(out)
    (test,) = json.loads((pytester.path / "run.json").read_text())["tests"]
    count, throughput = test["result"]["total"]["count"], test["result"]["total"]["throughput"]
    for _, m in running:
        rps, seen = float(m.group(1)), int(m.group(2))
        assert 0 < seen <= count
        assert throughput / 3 < rps < throughput * 3, (rps, throughput)
    final = next(m for i, m in lines if out[i].endswith("| finished"))
    assert int(final.group(2)) == count  # every second of every worker, folded


@pytest.mark.parametrize("flag", ["-q", "--minigram-quiet"])
def test_quiet_silences_the_live_line(pytester: pytest.Pytester, flag: str) -> None:
    _project(pytester, LOAD_TEST.replace("duration=5", "duration=2.5"))
    res = pytester.runpytest_subprocess(flag, "-p", "no:cacheprovider", timeout=120)
    res.assert_outcomes(passed=1)
    assert not [line for line in res.outlines if "minigram live:" in line], res.outlines


@pytest.mark.parametrize("verbosity", [[], ["-v"]])
def test_single_process_lines_come_from_the_engine(pytester: pytest.Pytester,
                                                   verbosity: list[str]) -> None:
    # The load runs inside the test, under pytest's output capture: the line must still
    # reach the terminal, on a line of its own, running lines first and then the outcome.
    _project(pytester, LOAD_TEST.replace("duration=5", "duration=2.5"))
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                        *verbosity, timeout=120)
    res.assert_outcomes(passed=1)
    out = res.outlines
    lines = [line for line in out if "minigram live:" in line]
    assert all(line.startswith("minigram live: test_live.py::test_live_load") for line in lines)
    running = [line for line in lines if not line.endswith("| finished")]
    assert running and lines[-1].endswith("| finished"), out
    assert "workers" not in lines[0]
    after = [line for line in out[out.index(lines[-1]) + 1:] if line.strip()]
    outcome = "test_live.py::test_live_load PASSED" if verbosity else "."
    assert after[0].startswith(outcome), out  # the outcome follows, on its own line


@pytest.mark.parametrize("option,value", [
    ("--minigram-live", "127.0.0.1:99999"), ("--minigram-live", "nowhere:80"),
    ("--minigram-prometheus", "127.0.0.1:http"), ("--minigram-prometheus", "1.2.3:9")])
def test_bad_addresses_are_usage_errors(pytester: pytest.Pytester, option: str,
                                        value: str) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    res = pytester.runpytest(f"{option}={value}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*{option}*invalid value*HOST:PORT*"])


PROMETHEUS_TEST = '''
import re
import threading
import time
import urllib.request

import pytest

def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for m in re.finditer(r'^minigram_requests_total\\{(.*?)\\} ([0-9.e+]+)$', text, re.M):
        if 'test="test_prom.py::test_scraped"' in m.group(1):
            total += float(m.group(2))
    return total, text

@pytest.mark.perf
def test_scraped(minigram_load, pytestconfig):
    url = pytestconfig.stash_url = None
    from pytest_minigram.plugin.live import LIVE
    url = pytestconfig.stash[LIVE].prometheus.url
    seen = []
    done = threading.Event()
    def poll():
        while not done.wait(0.5):
            seen.append(scrape(url)[0])
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    result = minigram_load("ping", users=3, duration=4)
    done.set()
    thread.join()
    during = [v for v in seen if v > 0]
    assert len(set(during)) >= 2 and during == sorted(during), seen  # it grew while it ran
    final, text = scrape(url)
    last_second = max(row["requests"] for row in result.timeseries[-2:])
    assert result.count - last_second <= final <= result.count, (final, result.count)
    per_action = sum(float(m.group(2)) for m in re.finditer(
        r'^minigram_action_latency_seconds_count\\{(.*?)\\} ([0-9.e+]+)$', text, re.M)
        if 'test="test_prom.py::test_scraped"' in m.group(1))
    assert per_action == final, (per_action, final)  # every request, in its action's histogram
    for name in ("minigram_errors_total", "minigram_latency_seconds_bucket",
                 "minigram_active_users", "minigram_dropped_arrivals_total",
                 "minigram_generator_cpu_ratio"):
        assert name in text, name
    print("PROM", final, result.count)
'''


def test_prometheus_counter_grows_and_matches_the_result(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TARGET_CONFTEST)
    pytester.makepyfile(test_prom=PROMETHEUS_TEST)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-s",
                                        "--minigram-prometheus", timeout=120)
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["minigram: Prometheus metrics at http://127.0.0.1:*/metrics",
                              "PROM *"])


STOP_CONFTEST_EXTRA = '''

import re as _re
import threading as _threading
import urllib.error as _uerr
import urllib.request as _ureq

def pytest_configure(config):
    if hasattr(config, "workerinput"):
        return
    from pytest_minigram.plugin.live import LIVE

    def stopper():
        live = config.stash[LIVE]
        url = live.page.url
        html = _ureq.urlopen(url, timeout=5).read().decode()
        token = _re.search(r'data-token="([^"]+)"', html).group(1)
        def post(tok, origin=None):
            headers = {"X-Minigram-Token": tok, "Content-Type": "application/json"}
            if origin:
                headers["Origin"] = origin
            req = _ureq.Request(url + "stop", method="POST", headers=headers,
                                data=b'{"test": "test_live.py::test_live_load"}')
            try:
                return _ureq.urlopen(req, timeout=5).status
            except _uerr.HTTPError as exc:
                return exc.code
        while not [l for l in live.state.running() if len(l.seconds) >= 2]:
            time.sleep(0.2)
        print("WRONG-TOKEN", post("nope"), "OTHER-ORIGIN", post(token, "http://evil.example"),
              flush=True)
        print("STOP", post(token), flush=True)
    _threading.Thread(target=stopper, daemon=True).start()
'''


def test_stop_reaches_every_xdist_worker(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TARGET_CONFTEST + STOP_CONFTEST_EXTRA)
    pytester.makepyfile(test_live=LOAD_TEST.replace("duration=5", "duration=40"))
    res = pytester.runpytest_subprocess("-n", "2", "-s", "-p", "no:cacheprovider",
                                        "--minigram-live", "--minigram-results=run.json",
                                        timeout=120)
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*WRONG-TOKEN 403 OTHER-ORIGIN 403*", "*STOP 200*",
                              "*stopped from the live page after * s of 40 s*"])
    (test,) = json.loads((pytester.path / "run.json").read_text())["tests"]
    assert test["stopped"] is True and test["verdict"] == "failed"
    result = test["result"]
    assert result["interrupted"] and result["duration"] < 30
    workers = result["generator"]["coordination"]["workers"]
    assert len(workers) == 2 and all(w["requests"] > 0 for w in workers.values())
