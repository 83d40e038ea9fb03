"""Uncertainty over seeds and trends in T: a bootstrap over runs and a Spearman permutation test.

Both are pure functions of run-level values with a fixed RNG seed, so a report is reproducible.

- :func:`seed_ci`: 95 % interval of a model's seed mean: Student's t (mean ± t_{n−1} s/√n, the
  default), or the percentile bootstrap — the runs of one model (role, T) resampled with
  replacement, each model on its own (stratified by model, as rliable does for tasks), with its
  own stream derived from the seed and its label.
- :func:`trend_test`: Spearman's ρ between T and the values, with a permutation p-value (the
  values are shuffled over the T they belong to; exact when there are few enough orderings).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from scipy import stats

LEVEL = 0.95


def resample_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of the rows of ``values`` [n, Q] → [B, Q]."""
    v = np.asarray(values, float)
    v = v.reshape(len(v), -1)
    idx = rng.integers(0, len(v), size=(resamples, len(v)))
    return v[idx].mean(axis=1)


def stream(seed: int, label: str) -> np.random.Generator:
    """An RNG for one model: the same (seed, label) gives the same draws in every report."""
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def seed_ci(values: np.ndarray, resamples: int, seed: int = 0, label: str = "",
            level: float = LEVEL, method: str = "t") -> tuple[np.ndarray, np.ndarray]:
    """(low, high) interval of the column means of ``values`` [n runs, Q]: Student's t
    (``method`` "t") or the percentile bootstrap ("bootstrap", ``resamples`` draws).

    NaN where there are fewer than 2 runs (one seed says nothing about the seed spread), where
    ``resamples`` is 0 (no intervals asked for), or where a column has a NaN.
    """
    v = np.asarray(values, float)
    v = v.reshape(len(v), -1)
    nan = np.full(v.shape[1], np.nan)
    if len(v) < 2 or resamples <= 0:
        return nan, nan.copy()
    if method == "t":
        mean, sd = v.mean(0), v.std(0, ddof=1)
        half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / math.sqrt(len(v))
        low, high = mean - half, mean + half
    else:
        means = resample_means(v, resamples, stream(seed, label))
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    bad = ~np.isfinite(v).all(0)
    low[bad], high[bad] = np.nan, np.nan
    return low, high


def trend_test(temps: np.ndarray, values: np.ndarray, resamples: int = 9999,
               seed: int = 0) -> tuple[float, float, int]:
    """(Spearman ρ, two-sided permutation p, n points) of a monotone trend of values in T.

    NaN ρ and p when there are fewer than 3 points, fewer than 2 distinct T, or constant values.
    """
    t = np.asarray(temps, float)
    v = np.asarray(values, float)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    n = len(t)
    if n < 3 or len(np.unique(t)) < 2 or np.ptp(v) == 0:
        return math.nan, math.nan, n

    rt = stats.rankdata(t)
    rt = (rt - rt.mean()) / np.sqrt(((rt - rt.mean()) ** 2).sum())

    def rho(x, axis=-1):  # Spearman ρ = Pearson correlation of the ranks (ties: mid-ranks)
        r = stats.rankdata(np.moveaxis(x, axis, -1), axis=-1)
        r = r - r.mean(-1, keepdims=True)
        return (r @ rt) / np.sqrt((r * r).sum(-1))

    res = stats.permutation_test((v,), rho, permutation_type="pairings", vectorized=True,
                                 n_resamples=resamples, random_state=seed)
    return float(res.statistic), float(res.pvalue), n
