"""How far a held-out figure could move on other drives: a block bootstrap interval.

Neighbouring frames of a drive are not independent draws (10 Hz, the same scene and the
same manoeuvre for seconds), so resampling single frames would give an interval far too
narrow. Each log is cut into consecutive blocks of ``block_frames`` rows and whole blocks
are resampled with replacement (the non-overlapping block bootstrap); scipy draws the
resamples. The statistic is the pooled mean (block sums over block sizes), so a short last
block weighs what its frames weigh.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import bootstrap

# 10 s at the camera's 10 Hz: longer than a manoeuvre, several blocks per 45 s log.
BLOCK_FRAMES = 100


def block_bootstrap_interval(
    values: np.ndarray,
    logs: np.ndarray,
    block_frames: int = BLOCK_FRAMES,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile interval of the mean of ``values`` (N,), rows of one log consecutive and in
    time order, ``logs`` (N,) which log each row is from; None from fewer than two blocks
    (nothing to resample). Deterministic for a given ``seed``."""
    values = np.asarray(values, dtype=np.float64)
    logs = np.asarray(logs)
    if values.ndim != 1 or values.shape != logs.shape:
        raise ValueError(f"values and logs must be (N,) alike, got {values.shape} and {logs.shape}")
    if block_frames < 1:
        raise ValueError(f"block_frames must be >= 1, got {block_frames}")
    if not np.isfinite(values).all():
        raise ValueError("values must be finite")
    sums, sizes = [], []
    for log in dict.fromkeys(logs.tolist()):  # logs in order of first appearance
        rows = values[logs == log]
        for start in range(0, len(rows), block_frames):
            block = rows[start : start + block_frames]
            sums.append(block.sum())
            sizes.append(len(block))
    if len(sums) < 2:
        return None

    def pooled_mean(block_sums, block_sizes, axis):
        return block_sums.sum(axis=axis) / block_sizes.sum(axis=axis)

    result = bootstrap(
        (np.asarray(sums), np.asarray(sizes, dtype=np.float64)),
        pooled_mean,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),  # not `rng`: Ubuntu 24.04 (Jazzy) ships scipy 1.11
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_difference(values: np.ndarray, other: np.ndarray, logs: np.ndarray) -> dict:
    """Mean of ``values - other`` (N,) measured on the same rows, with its block-bootstrap
    interval: paired, so what both share (hard and easy stretches of a drive) cancels and
    the interval is far narrower than either one's own."""
    difference = np.asarray(values, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    return {"difference": float(difference.mean()), "interval_95": block_bootstrap_interval(difference, logs)}
