"""The estimators of an eval's report: pass@k, pass^k, and a distribution's summary.

``pass_at_k(n, c, k)`` is the unbiased estimator of Chen et al. (2021), "Evaluating
Large Language Models Trained on Code": the chance that at least one of k trials,
drawn without replacement from n of which c succeeded, succeeds:
``1 - C(n-c, k) / C(n, k)``. ``pass_hat_k(n, c, k)`` is its counterpart for
reliability (pass^k, as in tau-bench): the chance that all k succeed,
``C(c, k) / C(n, k)``. Both are exact integer binomials (``math.comb``), so
no floating-point product drifts; an eval's figure is their mean over tasks.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """At least one of k succeeds. ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``."""
    _check(n, c, k)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """All k succeed. ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``."""
    _check(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")


def distribution(values: Sequence[float]) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``min``, ``median``, ``p90`` and ``max`` of ``values`` (None when empty).

    ``p90`` is the nearest-rank 90th percentile: a value that occurred.
    """
    if not values:
        return {"n": 0, "mean": None, "min": None, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    rank = max(math.ceil(0.9 * len(ordered)), 1)
    return {
        "n": len(ordered), "mean": round(statistics.fmean(ordered), 6), "min": ordered[0],
        "median": statistics.median(ordered), "p90": ordered[rank - 1], "max": ordered[-1],
    }  # fmt: skip
