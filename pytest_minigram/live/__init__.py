"""Watching a load while it runs: the state folded from per-second rows, the terminal line
(`state`), the live page with its stop button (`page`) and the Prometheus endpoint
(`prometheus`). Nothing here imports pytest; ``pytest_minigram.plugin.live`` wires it in."""

from __future__ import annotations

from pytest_minigram.live.state import LiveLoad, LiveState, LoadView, format_line

__all__ = ["LiveLoad", "LiveState", "LoadView", "format_line"]
