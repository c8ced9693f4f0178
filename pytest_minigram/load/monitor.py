"""The generator watches its own CPU: latency figures from a saturated generator are suspect."""

from __future__ import annotations

import time
from typing import Any

import psutil

__all__ = ["SATURATION_CPU", "SATURATION_FRACTION", "SATURATION_LAG", "CpuMonitor"]

# above this fraction of one core the event loop delays responses and timers noticeably
SATURATION_CPU = 0.9
# the run is flagged when it spent at least this share of its time above SATURATION_CPU
SATURATION_FRACTION = 0.2
# a second also counts as saturated when timers fired this late on average: the event loop
# was too busy (or the machine too loaded) to read responses on time
SATURATION_LAG = 0.010
PROBE_INTERVAL = 0.05


class CpuMonitor:
    """Samples this process's CPU time; each ``sample()`` covers the time since the last one.

    ``lag()`` is fed by a probe task that sleeps ``PROBE_INTERVAL`` and reports how late it
    woke up. CPU alone misses a generator starved by a loaded machine: it cannot reach 90%
    of a core, yet its timers and reads run late, and so do its latency figures.
    """

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._last_cpu = self._cpu()
        self._last_wall = time.monotonic()
        self._wall_total = 0.0
        self._cpu_total = 0.0
        self._saturated_wall = 0.0
        self._max = 0.0
        self._lag_sum = 0.0
        self._lag_n = 0
        self._lag_max = 0.0

    def lag(self, seconds: float) -> None:
        self._lag_sum += seconds
        self._lag_n += 1
        if seconds > self._lag_max:
            self._lag_max = seconds

    def _cpu(self) -> float:
        t = self._proc.cpu_times()
        return float(t.user + t.system)

    def sample(self) -> float:
        """CPU use since the previous sample, as a fraction of one core."""
        cpu, wall = self._cpu(), time.monotonic()
        d_cpu, d_wall = cpu - self._last_cpu, wall - self._last_wall
        self._last_cpu, self._last_wall = cpu, wall
        if d_wall <= 0.05:  # too short to mean anything; fold into the totals only
            self._cpu_total += d_cpu
            self._wall_total += max(d_wall, 0.0)
            return 0.0
        frac = d_cpu / d_wall
        mean_lag = self._lag_sum / self._lag_n if self._lag_n else 0.0
        self._lag_sum, self._lag_n = 0.0, 0
        self._cpu_total += d_cpu
        self._wall_total += d_wall
        self._max = max(self._max, frac)
        if frac >= SATURATION_CPU or mean_lag >= SATURATION_LAG:
            self._saturated_wall += d_wall
        return frac

    def summary(self) -> dict[str, Any]:
        wall = self._wall_total
        fraction = self._saturated_wall / wall if wall > 0 else 0.0
        return {
            "processes": 1,
            "cpu_mean": round(self._cpu_total / wall, 4) if wall > 0 else 0.0,
            "cpu_max": round(self._max, 4),
            "saturated": fraction >= SATURATION_FRACTION,
            "saturated_fraction": round(fraction, 4),
            "loop_lag_max": round(self._lag_max, 4),
        }
