"""The statistics of the gate: floors, the bootstrap tests on them, Mann-Whitney U."""


from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """U statistic of ``x`` against ``y`` and the two-sided p-value.

    U counts the pairs with x > y (ties count one half), so ``U / (len(x) * len(y))`` is the
    probability that a value of ``x`` exceeds one of ``y``. The p-value uses the normal
    approximation with tie correction and continuity correction (scipy's
    ``mannwhitneyu(method="asymptotic")``); it is fine from about 8 values per side.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs values on both sides")
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n1 + n2
    rank_x = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        rank_x += avg_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_x - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return u, 1.0
    z = max(abs(u - mu) - 0.5, 0.0) / math.sqrt(var)
    return u, math.erfc(z / math.sqrt(2))




def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("quantile of no values")
    s = sorted(values)
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return s[-1]
    return s[i] + (s[i + 1] - s[i]) * (pos - i)




def floor_of(groups: Sequence[Sequence[float]], q: float) -> float:
    """The floor of windows grouped by round: the median over rounds of each round's ``q``
    quantile (with one round, simply the ``q`` quantile of its windows)."""
    floors = [quantile(g, q) for g in groups]
    return floors[0] if len(floors) == 1 else statistics.median(floors)


def bootstrap_floor_test(xb: Sequence[float], xc: Sequence[float], q: float,
                         shift: Callable[[float, float], float | None], resamples: int,
                         seed: int) -> float:
    """Two-sided bootstrap p-value of ``shift(floor(xb), floor(xc)) != 0``, one run a side.

    Each side's windows are resampled with replacement, ``resamples`` times; the floor is
    the ``q`` quantile. The p-value is twice the smaller share of resampled shifts at or
    beyond zero on either side (percentile bootstrap), with the usual +1 correction so that
    it is never 0.
    """
    return hierarchical_floor_test([xb], [xc], q, shift, resamples, seed)


def hierarchical_floor_test(gb: Sequence[Sequence[float]], gc: Sequence[Sequence[float]],
                            q: float, shift: Callable[[float, float], float | None],
                            resamples: int, seed: int) -> float:
    """:func:`bootstrap_floor_test` for windows grouped by round (a two-level bootstrap).

    Rounds ran on different server processes, and a process's own speed is a source of
    noise of its own: windows of one round are not independent of each other. So each
    resample first draws the rounds with replacement, then the windows within each drawn
    round (Davison & Hinkley 1997, sec. 3.8; Saravanan et al. 2020), and takes
    :func:`floor_of` the result. With one round a side this is exactly the one-level
    bootstrap over windows.
    """
    return floor_shift_test(gb, gc, q, shift, resamples, seed)[0]


def floor_shift_test(gb: Sequence[Sequence[float]], gc: Sequence[Sequence[float]], q: float,
                     shift: Callable[[float, float], float | None], resamples: int,
                     seed: int) -> tuple[float, float | None]:
    """:func:`hierarchical_floor_test`'s p-value and the bootstrap standard error of the
    shift (None when too few resamples had a defined shift)."""
    rng = random.Random(seed)
    above = below = 0
    shifts: list[float] = []

    def draw(groups: Sequence[Sequence[float]]) -> float:
        chosen = groups if len(groups) == 1 else [
            groups[rng.randrange(len(groups))] for _ in groups]
        return floor_of([[g[rng.randrange(len(g))] for _ in g] for g in chosen], q)

    for _ in range(resamples):
        b = draw(gb)
        c = draw(gc)
        moved = shift(b, c)
        if moved is None or moved >= 0:
            above += 1
        if moved is None or moved <= 0:
            below += 1
        if moved is not None and math.isfinite(moved):
            shifts.append(moved)
    p = min(1.0, 2 * (min(above, below) + 1) / (resamples + 1))
    se = statistics.stdev(shifts) if len(shifts) >= max(10, resamples // 2) else None
    return p, se


def detectable_shift(se: float, alpha: float, power: float = 0.9) -> float:
    """The smallest true shift a two-sided test at ``alpha`` finds with ``power``, for an
    estimate with standard error ``se`` (normal approximation: (z_{1-a/2} + z_power) * se)."""
    z = statistics.NormalDist()
    return (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * se
