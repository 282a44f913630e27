"""How the report writes numbers in its tables: a statistic as a mean with the half-width
of its interval, or an interval alone, in percent points by default (one seed has no
interval, and says so rather than showing one); counts with thousands separators; FLOPs in
millions."""

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


def _thousands(n: float) -> str:
    """A parameter count or budget: `139,781`."""
    return f"{int(n):,}"


def _mflops(flops: float) -> str:
    """FLOPs in millions: two decimals, more below 1 so that three digits show (`0.110`)."""
    millions = flops / 1e6
    if millions <= 0:
        return "0"
    return f"{millions:,.{max(2, 2 - math.floor(math.log10(millions)))}f}"
