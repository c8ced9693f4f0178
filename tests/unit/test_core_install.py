"""The generic plugin without the app: its requirements, and a load test of another service
in a session where every Minigram dependency is unimportable."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.unit.plugin_helpers import TARGET_CONFTEST

APP_ONLY = ("starlette", "uvicorn", "python-multipart", "sqlalchemy", "alembic",
            "psycopg2-binary", "redis", "bcrypt", "pillow", "requests", "prometheus-client")
BLOCKED_MODULES = ("starlette", "uvicorn", "multipart", "sqlalchemy", "alembic", "psycopg2",
                   "redis", "bcrypt", "PIL", "requests", "minigram")

BLOCKER = f"""
import importlib.abc, sys

BLOCKED = {BLOCKED_MODULES!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed (core-only test)")
        return None

sys.meta_path.insert(0, Block())
"""


def _core_requirements() -> set[str]:
    names = set()
    for req in metadata.requires("pytest-minigram") or []:
        if "extra ==" in req:
            continue
        names.add(re.split(r"[\s;<>=!~\[]", req, maxsplit=1)[0].lower())
    return names


def test_the_core_needs_neither_the_app_nor_its_drivers() -> None:
    core = _core_requirements()
    assert "pytest-xdist" in core and "pytest" in core
    assert not core & set(APP_ONLY), core & set(APP_ONLY)
    extras = metadata.metadata("pytest-minigram").get_all("Provides-Extra") or []
    assert "minigram" in extras


def test_a_session_without_the_app_load_tests_another_service(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "conftest.py").write_text(TARGET_CONFTEST)
    (tmp_path / "test_other_service.py").write_text("""
import pytest

@pytest.mark.perf
def test_ping(minigram_load):
    result = minigram_load("ping", users=4, duration=1)
    result.check("error_rate < 1%", "ping.p95 < 1s")

@pytest.mark.perf(journey="ping", rate=20, duration=1, slo=["error_rate < 1%"])
def test_declared():
    pass

def test_the_app_is_really_missing():
    with pytest.raises(ImportError):
        import starlette  # noqa: F401
""")
    # only this distribution's plugins (and xdist's): other installed plugins need the app's
    # dependencies themselves
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    plugins = ["-p", "pytest_minigram.plugin", "-p", "pytest_minigram.minigram_harness.plugin",
               "-p", "xdist.plugin"]
    for args in ([], ["-n", "2"]):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *plugins, "-p", "no:cacheprovider", "-W",
             "ignore::pytest.PytestAssertRewriteWarning", "--junitxml=junit.xml",
             "--minigram-results=run.json", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "3 passed" in out, out
        assert (tmp_path / "run.json").is_file()
        assert "minigram perf summary" in out


HTTPS_CONFTEST = r'''
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HITS = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with LOCK:
            key = f"{self.command} {self.path}"
            HITS[key] = HITS.get(key, 0) + 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@pytest.fixture(scope="session")
def shop():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["SHOP_CERT"])
    server = Quiet(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def minigram_target(shop):
    return shop
'''

HTTPS_TESTS = r'''
import os
import pytest
from pytest_minigram import Journey, task
from conftest import HITS


class Shop(Journey):
    async def on_start(self, user):
        await user.post("/login", json={"user": "u"}, name="login")

    @task(3)
    async def browse(self, user):
        await user.get("/items", name="items")

    @task(1)
    async def buy(self, user):
        await user.post("/cart", json={"item": 1}, name="buy")

    async def on_stop(self, user):
        await user.post("/logout", name="logout")


@pytest.mark.perf
def test_shop_over_https(minigram_load):
    result = minigram_load(Shop, users=3, duration=1.5, ca_bundle=os.environ["SHOP_CA"])
    result.check("error_rate < 1%", "items.p95 < 1s", "buy.count > 0")
    assert HITS["POST /login"] == 3 and HITS["POST /logout"] == 3  # on_start, on_stop
    ratio = result.stats("items").count / result.stats("buy").count
    assert 1.5 < ratio < 6, ratio  # weights 3:1
    assert result.result.tls.count >= 3  # a handshake per user, timed apart
'''


def test_a_core_session_with_weighted_tasks_on_stop_https_and_a_typo(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem"))
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "conftest.py").write_text(HTTPS_CONFTEST)
    (tmp_path / "test_shop.py").write_text(HTTPS_TESTS)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "SHOP_CA": str(tmp_path / "ca.pem"),
           "SHOP_CERT": str(tmp_path / "server.pem")}
    plugins = ["-p", "pytest_minigram.plugin", "-p", "pytest_minigram.minigram_harness.plugin"]

    def session(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", *plugins, "-p",
                               "no:cacheprovider", "-W",
                               "ignore::pytest.PytestAssertRewriteWarning", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180, check=False)

    ok = session()
    assert ok.returncode == 0 and "1 passed" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "test_typo.py").write_text(
        "import pytest\n\n@pytest.mark.perf(journey='x', user=200)\ndef test_typo():\n"
        "    pass\n")
    typo = session("test_typo.py")
    assert typo.returncode == 4, typo.stdout + typo.stderr
    assert "test_typo.py::test_typo: @pytest.mark.perf: unknown key 'user'" in typo.stderr
