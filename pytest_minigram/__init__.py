"""pytest-minigram: performance regression testing with pytest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Journey", "LoadFunction", "PerfResult", "Result", "TargetInfo", "VirtualUser",
           "__version__", "as_journey", "task"]

if TYPE_CHECKING:
    from pytest_minigram.load.journey import Journey, VirtualUser, as_journey, task
    from pytest_minigram.load.result import Result
    from pytest_minigram.plugin.fixtures import LoadFunction, PerfResult
    from pytest_minigram.plugin.targets import TargetInfo

_ENGINE = ("Journey", "VirtualUser", "as_journey", "task")
_PLUGIN = {"LoadFunction": "fixtures", "PerfResult": "fixtures", "TargetInfo": "targets"}


def __getattr__(name: str) -> Any:
    # the engine's journey API, imported on first use so that ``import pytest_minigram`` stays
    # light for the modules that only need the version
    if name in _ENGINE:
        from pytest_minigram.load import journey

        return getattr(journey, name)
    if name == "Result":
        from pytest_minigram.load.result import Result

        return Result
    if name in _PLUGIN:
        import importlib

        return getattr(importlib.import_module(f"pytest_minigram.plugin.{_PLUGIN[name]}"), name)
    raise AttributeError(f"module 'pytest_minigram' has no attribute {name!r}")
