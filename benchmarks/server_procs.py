"""Helpers the benchmark scripts share for the servers they start."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Until ``url`` answers 200; SystemExit if the server exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server for {url} did not become ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a server process and its workers so far."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total
