"""Machine and commit information, and the machine fingerprint."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_minigram.environment import (
    collect_environment,
    cpu_model,
    fingerprint,
    git_info,
    machine_id,
    machine_info,
    package_versions,
)

GIT = shutil.which("git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_git_info_commit_branch_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "feature-x")
    (repo / "a.txt").write_text("one")
    _git(repo, "add", "a.txt")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "c1")
    info = git_info(repo)
    assert info["commit"] == _git(repo, "rev-parse", "HEAD") and len(info["commit"]) == 40
    assert info["branch"] == "feature-x"
    assert info["dirty"] is False
    assert info["project"] == "proj"
    assert info["time"] and info["time"][:4].isdigit()
    (repo / "untracked.txt").write_text("x")
    assert git_info(repo)["dirty"] is False  # untracked files do not make a run dirty
    (repo / "a.txt").write_text("two")
    assert git_info(repo)["dirty"] is True
    _git(repo, "checkout", "-q", "--detach")
    assert git_info(repo)["branch"] == "(detached head)"


def test_git_info_outside_a_checkout(tmp_path: Path) -> None:
    info = git_info(tmp_path)
    assert info == {"commit": None, "branch": None, "dirty": False, "time": None,
                    "project": tmp_path.name}


def test_machine_info() -> None:
    m = machine_info()
    assert m["cpu_model"] == cpu_model() and m["cpu_model"]
    assert isinstance(m["cpu_count"], int) and m["cpu_count"] >= 1
    assert m["ram_bytes"] > 2**20
    assert m["python_version"] == platform.python_version()
    assert m["system"] == platform.system()


def test_fingerprint_tracks_what_changes_timings() -> None:
    m = machine_info()
    fp = fingerprint(m)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint(dict(m)) == fp
    # hostname, kernel release, Python patch level and a few MiB of RAM do not matter
    same = dict(m, node="other-host", release="9.9.9", ram_bytes=m["ram_bytes"] + 2**20,
                python_version=".".join(platform.python_version_tuple()[:2]) + ".99")
    assert fingerprint(same) == fp
    for key, value in [("cpu_count", m["cpu_count"] + 1), ("cpu_model", "Other CPU"),
                       ("ram_bytes", m["ram_bytes"] * 2), ("system", "Darwin"),
                       ("python_version", "2.7.18"), ("python_implementation", "PyPy")]:
        assert fingerprint(dict(m, **{key: value})) != fp, key


def test_machine_id_is_like_pytest_benchmarks() -> None:
    mid = machine_id()
    py = ".".join(platform.python_version_tuple()[:2])
    assert mid == f"{platform.system()}-{platform.python_implementation()}-{py}-" \
                  f"{platform.architecture()[0]}"


def test_package_versions() -> None:
    versions = package_versions(["pytest", "surely-not-installed-pkg-xyz"])
    assert versions["pytest"] == pytest.__version__
    assert versions["surely-not-installed-pkg-xyz"] is None


def test_collect_environment(tmp_path: Path) -> None:
    env = collect_environment({"stage": "2", "workers": 2}, cwd=tmp_path)
    assert set(env) == {"git", "machine", "machine_id", "fingerprint", "packages",
                        "stage_config"}
    assert env["fingerprint"] == fingerprint(env["machine"])
    assert env["machine_id"] == machine_id(env["machine"])
    assert env["stage_config"] == {"stage": "2", "workers": 2}
    assert env["packages"]["hdrhistogram"]
    assert env["git"]["commit"] is None
