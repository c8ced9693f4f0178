"""Human formatting of report numbers: 12.3 ms, 1.24 s, 61%, ×4.2 better."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_minigram.metrics import Kind, human_seconds, kind_of


def number(v: Any) -> str:
    if v is None:
        return "—"
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) >= 0.01 else f"{v:.2g}"


seconds = human_seconds


def percent(v: Any) -> str:
    if v is None:
        return "—"
    p = float(v) * 100
    if p == 0:
        return "0%"
    if p >= 10:
        return f"{p:.0f}%"
    if p >= 1:
        return f"{p:.1f}".removesuffix(".0") + "%"
    return f"{p:.2f}%"


def value(v: Any, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "seconds":
        return seconds(v)
    if unit == "fraction":
        return percent(v)
    if unit == "rps":
        return f"{number(v)} req/s"
    if unit == "users":
        return f"{float(v):g} users"
    if unit == "arrivals":
        return f"{float(v):g}/s"
    if unit == "apdex":
        return f"{float(v):.2f}"
    return number(v)


_UNITS = {Kind.LATENCY: "seconds", Kind.RATE: "fraction", Kind.THROUGHPUT: "rps",
          Kind.SCORE: "apdex", Kind.COUNT: "number"}


def metric_unit(metric: str) -> str:
    try:
        return _UNITS[kind_of(metric)]
    except KeyError:
        return "number"


def ratio(before: Any, after: Any, higher_is_better: bool) -> dict[str, str] | None:
    """How much better `after` is than `before`: {"text": "4.2× better", "tone": "good"}."""
    if before is None or after is None:
        return None
    b, a = float(before), float(after)
    if b == a:
        return {"text": "same", "tone": "same"}
    if higher_is_better:
        if b == 0:
            return {"text": "from 0", "tone": "good"}
        if a == 0:
            return {"text": "to 0", "tone": "bad"}
        r = a / b
    else:
        if a == 0:
            return {"text": "to 0", "tone": "good"}
        if b == 0:
            return {"text": "from 0", "tone": "bad"}
        r = b / a
    if 0.95 <= r <= 1.05:
        return {"text": "≈ same", "tone": "same"}
    if r > 1:
        return {"text": f"{_times(r)} better", "tone": "good"}
    return {"text": f"{_times(1 / r)} worse", "tone": "bad"}


def _times(r: float) -> str:
    return f"{r:.1f}×" if r < 10 else f"{r:.0f}×"


def change(v: Any) -> str:
    if v is None:
        return "—"
    return f"{float(v) * 100:+.1f}%"


def workload(w: Mapping[str, Any]) -> str:
    model = w.get("model")
    duration = w.get("duration")
    tail = f" for {float(duration):g} s" if duration else ""
    if model == "open" and w.get("rate"):
        return f"open, {float(w['rate']):g} it/s{tail}"
    if model == "ramping" and w.get("stages"):
        peak = max(float(s[0]) for s in w["stages"])
        return f"ramping to {peak:g} it/s"
    if model == "ramping" and w.get("users"):
        return f"ramp to {w['users']} users{tail}"
    if w.get("users"):
        return f"{w['users']} users{tail}"
    return str(model or "")


def measured(v: Any, threshold: str) -> str:
    if not isinstance(v, int | float):
        return "—"
    t = threshold.lower()
    if "rate" in t or "%" in t:
        return percent(v)
    if t.startswith("p") or "mean" in t or "max" in t or "min" in t:
        return seconds(v)
    if "throughput" in t:
        return value(v, "rps")
    return number(v)


def breaking(bp: Mapping[str, Any] | None) -> str | None:
    if not bp or (bp.get("users") is None and bp.get("rate") is None):
        return None
    text = (f"{float(bp['users']):g} users" if bp.get("users") is not None
            else f"{float(bp['rate']):g}/s")
    if bp.get("low") is not None and bp.get("high") is not None:
        text += f" ({float(bp['low']):g}–{float(bp['high']):g})"
    return text


def plain(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list | tuple):
        return ", ".join(plain(x) for x in v)
    return str(v)
