"""pytest-minigram against a service that is not Minigram: a static site on http.server.

Two things make it your app: a ``minigram_target`` fixture that returns its base URL, and a
journey (what one virtual user does), here in test_site_perf.py.
"""

import sys

import pytest

from pytest_minigram.server import ServerProcess, free_port


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """Your service, started once per session and stopped (process tree and all) at the end."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text("<h1>hello</h1>\n")
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(root)],
        log_path=root.parent / "site.log", health_url=f"http://127.0.0.1:{port}/index.html",
        name="static site")
    with server:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def minigram_target(site):
    return site
