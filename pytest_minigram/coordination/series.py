"""The merged per-second time series of one load, folded as the workers' deltas arrive.

Each worker streams rows ``t = 0, 1, 2...`` counted from its own start. Once every worker
has reported its start (in the controller's clock), row ``t`` of worker ``w`` belongs to the
merged second ``t + round(start_w - base)``, ``base`` being the earliest start: exactly how
``pytest_minigram.load.result.merge`` aligns the time series of partial results, so the rows
built here equal the ones ``merge`` builds from the same partials.

Memory grows with the run's length, not with workers x length: a merged second is one
aggregate whatever the number of workers; it is final (and reduced to its row, with the
encoded histogram) as soon as every worker still running has sent a later second. Seconds
still open keep a full HdrHistogram; the coordinator reads no more from a worker that is far
ahead of the others (:meth:`SeriesAggregate.lead`), and if more than ``max_open`` seconds
are open all the same, the oldest are kept encoded until they are final.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

from pytest_minigram.load.result import new_histogram

__all__ = ["SeriesAggregate"]


def _add_blob(into: HdrHistogram, blob: str) -> None:
    other = HdrHistogram.decode(blob)
    if other.get_total_count():  # hdrh's add() takes min(..., 0) from an empty histogram
        into.add(other)


def _encode(hist: HdrHistogram) -> str:
    blob = hist.encode()
    return blob.decode("ascii") if isinstance(blob, bytes) else str(blob)


class _Second:
    __slots__ = ("actions", "blob", "cpu", "dropped", "errors", "hist", "latency", "requests",
                 "users")

    def __init__(self) -> None:
        self.cpu: float | None = None  # the busiest worker's generator CPU that second
        self.dropped = 0
        self.requests = 0
        self.errors = 0
        self.users = 0
        self.hist: HdrHistogram | None = None
        self.blob: str | None = None  # the histogram, encoded while the second waits
        self.actions: dict[str, list[int]] = {}
        self.latency: dict[str, list[float]] = {}  # per action: its le counts, then its sum

    def histogram(self) -> HdrHistogram:
        if self.hist is None:
            self.hist = new_histogram()
            if self.blob is not None:
                _add_blob(self.hist, self.blob)
                self.blob = None
        return self.hist

    def park(self) -> None:
        if self.hist is not None:
            self.blob = _encode(self.hist) if self.hist.get_total_count() else None
            self.hist = None


class SeriesAggregate:
    """Fold the per-second rows of ``workers`` into one series (see the module docstring)."""

    def __init__(self, workers: Sequence[str], *, max_open: int = 32) -> None:
        if not workers:
            raise ValueError("SeriesAggregate needs at least one worker")
        self.workers = tuple(workers)
        self.max_open = max(1, max_open)
        self.base: float | None = None
        self._starts: dict[str, float] = {}
        self._offset: dict[str, int] = {}
        self._pending: dict[str, list[Mapping[str, Any]]] = {w: [] for w in self.workers}
        self._last_t: dict[str, int] = {}  # last own-clock row index received per worker
        self._last: dict[str, int] = {}  # last merged second per worker still running
        self._running = set(self.workers)
        self._open: dict[int, _Second] = {}
        self._rows: list[dict[str, Any]] = []
        self._actions: list[dict[str, Any]] = []
        self._final_upto = -1  # merged seconds <= this are final
        self._new: list[tuple[dict[str, Any], dict[str, Any]]] = []  # for take_new()
        self.streamed: dict[str, dict[str, int]] = {w: {"requests": 0, "errors": 0}
                                                     for w in self.workers}

    # --- input ---------------------------------------------------------------------------
    def started(self, worker: str, at: float) -> None:
        """``worker`` really started at ``at`` (controller clock)."""
        self._known(worker)
        if worker in self._starts:
            raise ValueError(f"worker {worker} reported its start twice")
        self._starts[worker] = at
        if len(self._starts) == len(self.workers):
            self.base = min(self._starts.values())
            for w, start in self._starts.items():
                self._offset[w] = round(start - self.base)
                self._last[w] = self._offset[w] - 1
            for w in self.workers:
                rows, self._pending[w] = self._pending[w], []
                for row in rows:
                    self._fold(w, row)
                if w not in self._running:
                    del self._last[w]
            self._finalize()

    def add(self, worker: str, row: Mapping[str, Any]) -> None:
        """One second of ``worker``'s load, in the ``Result.timeseries`` row format."""
        self._known(worker)
        if worker not in self._running:
            raise ValueError(f"worker {worker} sent a second after it was done")
        t = row["t"]
        if not isinstance(t, int) or isinstance(t, bool) or t <= self._last_t.get(worker, -1):
            raise ValueError(f"worker {worker} sent second {t!r} after second "
                             f"{self._last_t.get(worker, -1)}; seconds must increase")
        for name in ("requests", "errors", "users"):
            if not isinstance(row[name], int) or isinstance(row[name], bool):
                raise ValueError(f"worker {worker}: {name} of second {t} is not an integer")
        blob = row.get("histogram")
        if blob is not None and not isinstance(blob, str):
            raise ValueError(f"worker {worker}: histogram of second {t} is not a string")
        self._last_t[worker] = t
        self.streamed[worker]["requests"] += row["requests"]
        self.streamed[worker]["errors"] += row["errors"]
        if self.base is None:
            self._pending[worker].append(row)
            return
        self._fold(worker, row)
        self._finalize()

    def finish(self, worker: str) -> None:
        """``worker`` will send no more seconds."""
        self._known(worker)
        self._running.discard(worker)
        if self.base is not None:
            self._last.pop(worker, None)
            self._finalize()

    # --- output --------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """The merged series; every second is final once every worker finished."""
        if self._running:
            raise RuntimeError(f"worker(s) {', '.join(sorted(self._running))} still running")
        if self.base is None and any(self._pending.values()):
            raise RuntimeError("some workers never reported their start")
        self._finalize()
        return list(self._rows)

    def action_rows(self) -> list[dict[str, Any]]:
        """Per merged second, the requests and errors of each action (``{t, actions}``)."""
        return list(self._actions)

    def take_new(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The merged seconds made final since the last call, each as ``(row, extra)``;
        ``extra`` has that second's ``actions``, ``dropped`` arrivals (summed over the workers)
        and ``cpu`` (the busiest worker's generator CPU, or None): what a live view shows."""
        new, self._new = self._new, []
        return new

    @property
    def open_seconds(self) -> int:
        return len(self._open)

    def lead(self, worker: str) -> int:
        """How many seconds ``worker`` is ahead of the slowest worker still running.

        The coordinator stops reading from a worker far ahead (time-compressed senders, or
        one worker stalled) until the others catch up, so the open seconds stay few.
        """
        if self.base is None:
            return len(self._pending.get(worker, ()))
        last = self._last.get(worker)
        return 0 if last is None else last - self._final_upto

    # --- internals -----------------------------------------------------------------------
    def _known(self, worker: str) -> None:
        if worker not in self._pending:
            raise ValueError(f"worker {worker} is not part of this load")

    def _fold(self, worker: str, row: Mapping[str, Any]) -> None:
        t = int(row["t"]) + self._offset[worker]
        if t <= self._final_upto:  # cannot happen: seconds of a worker increase
            raise ValueError(f"worker {worker}: second {t} is already final")
        slot = self._open.get(t)
        if slot is None:
            slot = self._open[t] = _Second()
            if len(self._open) > self.max_open:
                self._park_oldest()
        slot.requests += row["requests"]
        slot.errors += row["errors"]
        slot.users += row["users"]
        blob = row.get("histogram")
        if blob:
            _add_blob(slot.histogram(), blob)
        actions = row.get("actions")
        if isinstance(actions, Mapping):
            for name, info in actions.items():
                counts = slot.actions.setdefault(str(name), [0, 0])
                counts[0] += int(info.get("count", 0))
                counts[1] += int(info.get("errors", 0))
                le = info.get("le")
                if isinstance(le, list):
                    into = slot.latency.get(str(name))
                    add = [*le, float(info.get("sum") or 0.0)]
                    slot.latency[str(name)] = add if into is None else [
                        a + b for a, b in zip(into, add, strict=True)]
        live = row.get("live")
        if isinstance(live, Mapping):
            slot.dropped += int(live.get("dropped") or 0)
            cpu = live.get("cpu")
            if isinstance(cpu, int | float) and (slot.cpu is None or cpu > slot.cpu):
                slot.cpu = float(cpu)
        if worker in self._last:
            self._last[worker] = t

    def _park_oldest(self) -> None:
        live = [t for t, s in self._open.items() if s.hist is not None]
        for t in sorted(live)[: len(live) - self.max_open]:
            self._open[t].park()

    def _finalize(self) -> None:
        if self.base is None:
            return
        upto = min(self._last.values()) if self._last else max(self._open, default=-1)
        for t in sorted(k for k in self._open if k <= upto):
            self._rows.append(self._row(t, self._open.pop(t)))
        self._final_upto = max(self._final_upto, upto)

    def _row(self, t: int, slot: _Second) -> dict[str, Any]:
        row: dict[str, Any] = {"t": t, "requests": slot.requests, "errors": slot.errors,
                               "users": slot.users, "p50": None, "p95": None,
                               "histogram": None}
        hist = slot.hist if slot.hist is not None else (
            slot.histogram() if slot.blob is not None else None)
        if hist is not None and hist.get_total_count():
            pct = hist.get_percentile_to_value_dict([50.0, 95.0])
            row["p50"], row["p95"] = pct[50.0] / 1e6, pct[95.0] / 1e6
            row["histogram"] = _encode(hist)
        actions: dict[str, dict[str, Any]] = {
            name: {"count": c, "errors": e} for name, (c, e) in sorted(slot.actions.items())}
        for name, latency in slot.latency.items():
            actions[name].update(le=[int(n) for n in latency[:-1]], sum=latency[-1])
        if slot.actions:
            self._actions.append({"t": t, "actions": actions})
        self._new.append((row, {"actions": actions, "dropped": slot.dropped, "cpu": slot.cpu}))
        return row
