"""Summary statistics of a run's figures (latencies), as the reports print them."""

__all__ = ["percentiles"]


def percentiles(values):
    """{"n", "min", "median", "p99", "max"} of a list of numbers (empty: n = 0 only)."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]
    return {"n": len(v), "min": v[0], "median": pick(0.5), "p99": pick(0.99), "max": v[-1]}
