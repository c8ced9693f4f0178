"""Where and on what a run happened: git commit, machine, Python, packages, fingerprint.

The fingerprint is what the comparison checks before trusting a baseline: two runs with the
same fingerprint ran on the same kind of machine (CPU model and count, RAM, OS, Python).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "DEFAULT_PACKAGES",
    "collect_environment",
    "cpu_model",
    "fingerprint",
    "git_info",
    "machine_id",
    "machine_info",
    "package_versions",
]

DEFAULT_PACKAGES = (
    "pytest-minigram", "pytest", "starlette", "uvicorn", "sqlalchemy", "psycopg2-binary",
    "redis", "hdrhistogram", "httptools", "uvloop",
)
_GIT_TIMEOUT = 5.0


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_info(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit id, branch, dirty flag and commit time; ``None`` values outside a git checkout."""
    where = Path(cwd) if cwd is not None else Path.cwd()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "branch": None, "dirty": False, "time": None,
                "project": where.resolve().name}
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], where)
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    top = _git(["rev-parse", "--show-toplevel"], where)
    return {
        "commit": commit,
        "branch": "(detached head)" if branch == "HEAD" else branch,
        "dirty": bool(status),
        "time": _git(["show", "-s", "--format=%cI", "HEAD"], where),
        "project": Path(top).name if top else where.resolve().name,
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "ram_bytes": psutil.virtual_memory().total,
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "python_compiler": platform.python_compiler(),
        "python_build": list(platform.python_build()),
        "python_executable": sys.executable,
    }


def fingerprint(machine: dict[str, Any]) -> str:
    """A short hash of what makes timings comparable.

    RAM is rounded to whole GiB and Python to major.minor, so a kernel update or a patch
    release of Python does not count as a different machine; the hostname is left out so
    that identical CI runners share a fingerprint.
    """
    py = ".".join(str(machine.get("python_version", "")).split(".")[:2])
    key = {
        "cpu_model": machine.get("cpu_model"),
        "cpu_count": machine.get("cpu_count"),
        "ram_gib": round(int(machine.get("ram_bytes") or 0) / 2**30),
        "os": f"{machine.get('system')}-{machine.get('machine')}",
        "python": f"{machine.get('python_implementation')}-{py}",
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def machine_id(machine: dict[str, Any] | None = None) -> str:
    """The storage sub-directory, as pytest-benchmark names it: ``Linux-CPython-3.11-64bit``."""
    m = machine if machine is not None else machine_info()
    py = ".".join(str(m.get("python_version", "")).split(".")[:2])
    bits = platform.architecture()[0]
    return f"{m.get('system')}-{m.get('python_implementation')}-{py}-{bits}"


def package_versions(
    names: tuple[str, ...] | list[str] = DEFAULT_PACKAGES,
) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect_environment(
    stage_config: dict[str, Any] | None = None,
    *,
    cwd: str | Path | None = None,
    packages: tuple[str, ...] | list[str] = DEFAULT_PACKAGES,
) -> dict[str, Any]:
    """The ``environment`` block of a results file (see docs/results-file.md)."""
    machine = machine_info()
    return {
        "git": git_info(cwd),
        "machine": machine,
        "machine_id": machine_id(machine),
        "fingerprint": fingerprint(machine),
        "packages": package_versions(packages),
        "stage_config": dict(stage_config or {}),
    }
