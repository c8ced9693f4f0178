"""The running loads as Prometheus metrics, through prometheus-client, on a registry of our
own (never the process-wide default one).

Per test (and stage): ``minigram_requests_total`` and ``minigram_errors_total`` per action,
``minigram_latency_seconds`` (a histogram built from the load's HdrHistogram, all actions),
``minigram_action_latency_seconds`` (the same per action, from the bucket counts the engine
streams each second),
``minigram_active_users``, ``minigram_dropped_arrivals_total`` and
``minigram_generator_cpu_ratio`` (the busiest generator's CPU in the last second, of one
core). Counters add up every load call of a test, finished ones included, so they only grow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pytest_minigram.live.state import PROMETHEUS_BOUNDS, LiveState

__all__ = ["BOUNDS", "LiveCollector", "PrometheusEndpoint"]

BOUNDS = PROMETHEUS_BOUNDS


class LiveCollector(Collector):
    def __init__(self, state: LiveState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        labels = ["test", "stage"]
        requests = CounterMetricFamily("minigram_requests", "Requests sent, per action",
                                       labels=[*labels, "action"])
        errors = CounterMetricFamily("minigram_errors", "Requests that failed, per action",
                                     labels=[*labels, "action"])
        dropped = CounterMetricFamily("minigram_dropped_arrivals",
                                      "Arrivals the open workload could not start (no free "
                                      "user)", labels=labels)
        latency = HistogramMetricFamily("minigram_latency_seconds",
                                        "Request latency (all actions)", labels=labels)
        action_latency = HistogramMetricFamily(
            "minigram_action_latency_seconds", "Request latency, per action (bucket counts "
            "within the load's HdrHistogram precision, 3 significant digits)",
            labels=[*labels, "action"])
        users = GaugeMetricFamily("minigram_active_users", "Active virtual users",
                                  labels=labels)
        cpu = GaugeMetricFamily("minigram_generator_cpu_ratio",
                                "The busiest load generator's CPU in the last second, as a "
                                "fraction of one core", labels=labels)
        per_test: dict[tuple[str, str], dict[str, Any]] = {}
        for load in self.state.export(BOUNDS):
            key = (load["test"], load["stage"])
            agg = per_test.setdefault(key, {"actions": {}, "latency": {}, "dropped": 0,
                                            "count": 0,
                                            "sum": 0.0, "buckets": [0] * len(BOUNDS),
                                            "users": 0, "cpu": None})
            for name, (count, errs) in load["actions"].items():
                slot = agg["actions"].setdefault(name, [0, 0])
                slot[0] += count
                slot[1] += errs
            for name, values in load["action_latency"].items():
                into = agg["latency"].get(name)
                agg["latency"][name] = values if into is None else [
                    a + b for a, b in zip(into, values, strict=True)]
            agg["dropped"] += load["dropped"]
            agg["count"] += load["count"]
            agg["sum"] += load["sum"]
            agg["buckets"] = [a + b for a, b in zip(agg["buckets"], load["buckets"],
                                                    strict=True)]
            if load["running"]:
                agg["users"] += load["users"]
                agg["cpu"] = load["cpu"]
        for (test, stage), agg in per_test.items():
            for name, (count, errs) in sorted(agg["actions"].items()):
                requests.add_metric([test, stage, name], count)
                errors.add_metric([test, stage, name], errs)
            for name, values in sorted(agg["latency"].items()):
                count = agg["actions"].get(name, [0, 0])[0]
                buckets = [(f"{b:g}", n) for b, n in zip(BOUNDS, values[:-1], strict=True)]
                action_latency.add_metric([test, stage, name], [*buckets, ("+Inf", count)],
                                          sum_value=values[-1])
            dropped.add_metric([test, stage], agg["dropped"])
            buckets = [(f"{b:g}", n) for b, n in zip(BOUNDS, agg["buckets"], strict=True)]
            latency.add_metric([test, stage], [*buckets, ("+Inf", agg["count"])],
                               sum_value=agg["sum"])
            users.add_metric([test, stage], agg["users"])
            cpu.add_metric([test, stage], agg["cpu"] if agg["cpu"] is not None else 0.0)
        yield from (requests, errors, dropped, latency, action_latency, users, cpu)


class PrometheusEndpoint:
    """``/metrics`` on ``host:port`` (port 0: a free one), in a thread of its own."""

    def __init__(self, state: LiveState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LiveCollector(state))
        self.host, self.port = host, port
        self._server: Any = None

    def start(self) -> PrometheusEndpoint:
        self._server, _ = start_http_server(self.port, self.host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
