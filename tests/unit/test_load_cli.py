"""``python -m pytest_minigram load``: journeys by import path, escaping, https options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pytest_minigram.load.cli import escape_controls, main
from pytest_minigram.load.testserver import ServerProcess

MODULE = '''
from pytest_minigram.load import Journey, task


async def visit(user):
    await user.get("/x", name="visit")


class Shop(Journey):
    name = "shop"

    async def on_start(self, user):
        await user.post("/x", name="login")

    @task(3)
    async def browse(self, user):
        await user.get("/x", name="browse")

    @task(1)
    async def hostile(self, user):
        await user.get("/x?status=500&body=%1B%5D0%3Bpwned%07%1B%5B31m", name="hostile")


shop = Shop()
not_a_journey = 42


def sync(user):
    pass
'''


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess() as srv:
        yield srv


@pytest.fixture
def journeys_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"cli_journeys_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("attr", ["visit", "Shop", "shop"])
def test_journey_by_import_path(server: ServerProcess, journeys_module: str, attr: str,
                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main([server.url, "-j", f"{journeys_module}:{attr}", "-u", "2", "--iterations",
                 "20", "-q", "-o", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["labels"]["journey"] == ("visit" if attr == "visit" else "shop")
    if attr == "visit":
        assert data["actions"]["visit"]["count"] == 40
    else:
        assert data["actions"]["login"]["count"] == 2
        assert data["iterations"] == 40
        assert data["actions"]["browse"]["count"] + data["actions"]["hostile"]["count"] == 40
    assert "TOTAL" in capsys.readouterr().out


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_xyz:visit", "cannot import 'no_such_module_xyz'"),
    ("{mod}:missing", "has no attribute 'missing'"),
    ("{mod}:not_a_journey", "42 is not a journey"),
    ("{mod}:sync", "must be an 'async def'"),
    ("{mod}:", "use package.module:attribute"),
    ("no-such-name", "unknown journey 'no-such-name'; available:"),
])
def test_a_bad_journey_is_a_clear_usage_error(journeys_module: str, spec: str, message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["http://127.0.0.1:9", "-j", spec.format(mod=journeys_module), "-q"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_what_came_from_the_target_is_printed_escaped(
        server: ServerProcess, journeys_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([server.url, "-j", f"{journeys_module}:Shop", "-u", "1", "--iterations", "30",
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert "error status:500" in out
    assert r"-> 500 \x1b]0;pwned\x07\x1b[31m" in out
    assert not any(0 <= ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) < 0xA0 for c in out)


def test_escape_controls() -> None:
    assert escape_controls("ok\x1b[2J\r\nfake line\t\x9b\u202e\x00") == (
        r"ok\x1b[2J\r\nfake line\t\x9b\u202e\x00")
    assert escape_controls("plain é ✓") == "plain é ✓"


def test_https_options(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    bundle, certfile, keyfile = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(bundle))
    cert.private_key_pem.write_to_path(str(keyfile))
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))

    (tmp_path / "cli_tls_mod.py").write_text(MODULE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # a subprocess, as a user runs it, so that stderr holds every warning there is
        return subprocess.run(
            [sys.executable, "-m", "pytest_minigram", "load", url, "-j", "cli_tls_mod:visit",
             "-u", "1", "--iterations", "2", "-q", *args],
            capture_output=True, text=True, timeout=60, check=False, env=env)

    with ServerProcess(str(certfile), str(keyfile)) as srv:
        url = srv.url
        verified = cli("--ca-bundle", str(bundle))
        refused = cli()
        insecure = cli("--insecure")
    assert verified.returncode == 0, verified.stderr
    assert "visit" in verified.stdout and "\nerror " not in verified.stdout
    assert "TLS handshake: 1," in verified.stdout and "connect: 1," in verified.stdout
    assert "error tls: 2" in refused.stdout and "certificate verify failed" in refused.stdout
    assert insecure.returncode == 0 and "\nerror " not in insecure.stdout
    assert insecure.stderr.count("not verified") == 1, insecure.stderr
    assert "InsecureTargetWarning" not in insecure.stderr
    contradiction = subprocess.run(
        [sys.executable, "-m", "pytest_minigram", "load", "https://127.0.0.1:9", "--insecure",
         "--ca-bundle", str(bundle)], capture_output=True, text=True, timeout=60, check=False)
    assert contradiction.returncode == 2 and "contradict" in contradiction.stderr


def test_summary_shows_expected_statuses(server: ServerProcess, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cli_expect_mod.py").write_text(textwrap.dedent('''
        async def like(user):
            await user.post("/x?status=409", name="like", expect=(409,))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main([server.url, "-j", "cli_expect_mod:like", "--iterations", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "expected like: 409 x3 (not errors)" in out and "error status" not in out
