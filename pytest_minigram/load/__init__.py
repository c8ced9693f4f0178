"""The load engine: virtual users play journeys under a workload; results merge exactly.

Nothing here imports pytest; the plugin, the CLI and plain scripts all drive it the same way.
"""

from __future__ import annotations

from pytest_minigram.load.client import Response
from pytest_minigram.load.journey import Journey, RequestFailed, VirtualUser
from pytest_minigram.load.recorder import Progress
from pytest_minigram.load.result import ActionStats, Result, concat, format_apdex, merge
from pytest_minigram.load.runner import run, run_async
from pytest_minigram.load.workloads import (
    Closed,
    Open,
    RampingRate,
    Workload,
    parse_duration,
    workload_from_dict,
)

__all__ = [
    "ActionStats",
    "Closed",
    "Journey",
    "Open",
    "Progress",
    "RampingRate",
    "RequestFailed",
    "Response",
    "Result",
    "VirtualUser",
    "Workload",
    "concat",
    "format_apdex",
    "merge",
    "parse_duration",
    "run",
    "run_async",
    "workload_from_dict",
]
