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
