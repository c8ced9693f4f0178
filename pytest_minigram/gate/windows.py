"""The gate's samples: the steady-state one-second windows of a result, per metric."""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from pytest_minigram.gate.tolerance import _kind
from pytest_minigram.metrics import percentile_of


@dataclass(frozen=True)
class GateConfig:
    """The knobs of the significance test (see docs/regression-gate.md)."""

    alpha: float = 0.01  # two-sided bootstrap p-value of the floor shift must be below this
    min_samples: int = 8  # steady-state windows needed on each side
    floor_quantile: float = 0.1  # the floor: this quantile of the windows, on the good side
    resamples: int = 2000  # bootstrap resamples
    seed: int = 0  # the bootstrap's random seed: the same two runs always give the same answer
    min_window_requests: int = 10  # latency windows with fewer requests are too noisy
    skip_ramp_up: bool = True


class _Windows:
    """The steady-state one-second rows of a result, per round, with decoded histograms cached.

    A result of one run is one group of windows. A result of several rounds (``concat``, the
    plugin's ``--minigram-rounds``) is one group per round: each round has its own ramp-up and
    its own last, partial second, and may have run on its own server process.
    """

    def __init__(self, result: dict[str, Any], config: GateConfig) -> None:
        workload = result.get("workload") or {}
        ramp = math.ceil(float(workload.get("ramp_up") or 0)) if config.skip_ramp_up else 0
        rounds = result.get("rounds") or [
            {"index": None, "offset": 0, "duration": result.get("duration") or 0}]
        rows = result.get("timeseries") or []
        self.groups: list[list[int]] = []  # indexes into self.rows, one list per round
        self.rows: list[dict[str, Any]] = []
        for info in rounds:
            offset = int(info.get("offset") or 0)
            start = offset + ramp
            end = offset + math.floor(float(info.get("duration") or 0))  # last second: partial
            index = info.get("index")
            group = []
            for row in rows:
                if start <= int(row["t"]) < end and (index is None or row.get("round") == index):
                    group.append(len(self.rows))
                    self.rows.append(row)
            self.groups.append(group)
        self.min_requests = config.min_window_requests
        self._hists: dict[int, HdrHistogram] = {}

    def _hist(self, i: int) -> HdrHistogram | None:
        blob = self.rows[i].get("histogram")
        if not blob:
            return None
        if i not in self._hists:
            self._hists[i] = HdrHistogram.decode(blob)
        return self._hists[i]

    def _sample(self, metric: str, i: int) -> float | None:
        row = self.rows[i]
        kind = _kind(metric)
        if kind == "throughput":
            return float(row["requests"])
        if kind == "error_rate":
            return row["errors"] / row["requests"] if row["requests"] else None
        if row["requests"] < self.min_requests:
            return None
        q = percentile_of(metric)
        hist = self._hist(i)
        if hist is not None and hist.get_total_count():
            if q is not None:
                return hist.get_value_at_percentile(q) / 1e6
            if metric == "mean":
                return hist.get_mean_value() / 1e6
            value = hist.get_min_value() if metric == "min" else hist.get_max_value()
            return value / 1e6
        if q in (50.0, 95.0) and row.get(f"p{q:g}") is not None:
            return float(row[f"p{q:g}"])
        return None

    def grouped(self, metric: str) -> list[list[float]]:
        """The metric's window samples, one list per round (rounds without any left out)."""
        out = []
        for group in self.groups:
            values = [v for v in (self._sample(metric, i) for i in group) if v is not None]
            if values:
                out.append(values)
        return out

    def samples(self, metric: str) -> list[float]:
        return [v for group in self.grouped(metric) for v in group]




def _floor_q(metric: str, config: GateConfig) -> float:
    """Which quantile of the windows estimates the metric's undisturbed value.

    Interference from other tenants only adds latency and only removes throughput, so the
    floor is taken on the good side: a low quantile for latency, a high one for throughput.
    Errors are not what a busy neighbour causes: error_rate uses the median.
    """
    kind = _kind(metric)
    if kind == "latency":
        return config.floor_quantile
    if kind == "throughput":
        return 1 - config.floor_quantile
    return 0.5
