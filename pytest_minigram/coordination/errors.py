"""Exceptions and time limits shared by the coordinator and its workers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CoordinationError",
    "CoordinationTimeout",
    "CoordinatorGone",
    "LoadFailed",
    "ProtocolError",
    "Refused",
    "Timeouts",
]


class CoordinationError(Exception):
    """A perf test could not be coordinated across its workers."""


class CoordinationTimeout(CoordinationError):
    """A wait ran out of time; the message says what was awaited and from whom."""


class CoordinatorGone(CoordinationError):
    """The worker lost its coordinator (connection closed, or it fell silent)."""


class Refused(CoordinationError):
    """The coordinator refused this worker (wrong secret, duplicate id, protocol mismatch)."""


class ProtocolError(CoordinationError):
    """A message that is not part of the protocol, or does not fit the current state."""


class LoadFailed(CoordinationError):
    """The coordinator's verdict for a load is *failed*: it is failed for every worker.

    ``workers`` names the workers that caused it (empty when the cause is elsewhere, e.g. the
    server under test died).
    """

    def __init__(self, reason: str, workers: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.workers = workers


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Every wait of the protocol, in seconds. Both sides must use the same heartbeat figures.

    ``connect``: a worker connecting and being welcomed; ``join``: an accepted connection
    sending its ``join``; ``barrier``: all participants of a load arriving after the first;
    ``probe``: a worker answering one clock probe; ``start_delay``: from the last clock probe to
    the common start instant; ``start``: every worker reporting ``started`` after that instant;
    ``grace``: beyond the expected duration, every worker reporting ``done``;
    ``default_duration``: the expected duration when no worker gave one; ``heartbeat`` and
    ``missed``: a peer that sends nothing for ``heartbeat * missed`` seconds is gone;
    ``io``: a socket read or write that makes no progress for that long fails.
    """

    connect: float = 10.0
    join: float = 10.0
    barrier: float = 120.0
    probe: float = 5.0
    start_delay: float = 0.5
    start: float = 10.0
    grace: float = 60.0
    default_duration: float = 600.0
    heartbeat: float = 1.0
    missed: int = 3
    io: float = 10.0

    @property
    def silence(self) -> float:
        """How long a peer may send nothing before it counts as gone."""
        return self.heartbeat * self.missed
