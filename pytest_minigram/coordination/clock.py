"""Clock offsets, measured NTP-style: several round trips, keep the one with the smallest RTT.

The controller sends a probe at ``sent`` (its clock), the worker answers with its clock
``remote``, the answer comes back at ``received`` (controller clock). If the two legs took the
same time, the worker's clock read ``remote`` at controller time ``(sent + received) / 2``;
the error of that assumption is at most half the round trip, so the sample with the smallest
round trip is the best one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["ClockOffset", "ClockSample", "best_offset", "shifted_clock"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ClockSample:
    sent: float
    remote: float
    received: float

    @property
    def rtt(self) -> float:
        return self.received - self.sent

    @property
    def offset(self) -> float:
        return self.remote - (self.sent + self.received) / 2


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """A worker's clock minus the controller's clock (seconds), and how well it is known."""

    offset: float
    rtt: float  # round trip of the sample it comes from; the error is at most rtt / 2
    samples: int

    def to_worker(self, t: float) -> float:
        """A controller-clock instant in the worker's clock."""
        return t + self.offset

    def to_controller(self, t: float) -> float:
        """A worker-clock instant in the controller's clock."""
        return t - self.offset


def best_offset(samples: Iterable[ClockSample]) -> ClockOffset:
    samples = list(samples)
    if not samples:
        raise ValueError("best_offset() needs at least one sample")
    best = min(samples, key=lambda s: s.rtt)
    return ClockOffset(offset=best.offset, rtt=best.rtt, samples=len(samples))


def shifted_clock(seconds: float, base: Clock | None = None) -> Clock:
    """A clock ``seconds`` ahead of ``base`` (default ``time.time``): to simulate a skew."""

    def clock() -> float:
        return (base or time.time)() + seconds

    return clock
