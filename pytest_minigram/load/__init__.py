"""The load engine: virtual users play journeys under a workload; results merge exactly.

Nothing here imports pytest; the plugin, the CLI and plain scripts all drive it the same way.
"""

from __future__ import annotations

from pytest_minigram.load.client import (
    IDEMPOTENT_METHODS,
    ClientError,
    InsecureTargetWarning,
    Response,
    Target,
)
from pytest_minigram.load.journey import (
    Journey,
    JourneyLike,
    RequestFailed,
    VirtualUser,
    as_journey,
    default_name,
    task,
)
from pytest_minigram.load.recorder import Progress
from pytest_minigram.load.result import (
    ActionStats,
    Result,
    Timing,
    concat,
    format_apdex,
    merge,
)
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
    "IDEMPOTENT_METHODS",
    "ActionStats",
    "ClientError",
    "Closed",
    "InsecureTargetWarning",
    "Journey",
    "JourneyLike",
    "Open",
    "Progress",
    "RampingRate",
    "RequestFailed",
    "Response",
    "Result",
    "Target",
    "Timing",
    "VirtualUser",
    "Workload",
    "as_journey",
    "concat",
    "default_name",
    "format_apdex",
    "merge",
    "parse_duration",
    "run",
    "run_async",
    "task",
    "workload_from_dict",
]
