"""How the report writes a statistic in its tables: a mean with the half-width of its
interval, or an interval alone, in percent points by default. One seed has no interval,
and says so rather than showing one."""

from __future__ import annotations

import math

from search import stats


def _pm(interval: stats.Interval, scale: float = 100.0, digits: int = 2) -> str:
    """`mean ± half-width` (the interval is symmetric), scaled to percent by default."""
    if math.isnan(interval.low):
        return f"{interval.mean * scale:.{digits}f} (1 seed)"
    half = (interval.high - interval.mean) * scale
    return f"{interval.mean * scale:.{digits}f} ± {half:.{digits}f}"


def _range(interval: stats.Interval, scale: float = 100.0) -> str:
    if math.isnan(interval.low):
        return ""
    return f"[{interval.low * scale:+.2f}, {interval.high * scale:+.2f}]"
