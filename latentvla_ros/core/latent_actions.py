"""Latent actions for one camera frame: the discrete tokens the planner fuses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from latentvla_ros.core.validation import InputError, require_finite, require_shape

DEFAULT_HORIZON = 12
DEFAULT_CODEBOOK_SIZE = 16
PROBABILITY_SUM_TOLERANCE = 1e-3


class LatentSource(IntEnum):
    """Who produced the actions; values match ``LatentActions.SOURCE_*``."""

    STUDENT = 0
    TEACHER = 1


@dataclass(frozen=True)
class LatentActions:
    """``tokens`` (H,) code ids, ``probabilities`` (H, K) per-step distributions,
    optional ``embedding`` (H, D) and ``visual_embedding`` (D,) (what the planner's fusion
    attends to), for the camera frame stamped ``stamp_ns``."""

    stamp_ns: int
    source: LatentSource
    tokens: np.ndarray
    probabilities: np.ndarray
    step_period_s: float
    model_version: str
    embedding: np.ndarray | None = None
    frame_id: str = "camera"
    visual_embedding: np.ndarray | None = None

    def __post_init__(self) -> None:
        probabilities = require_finite("LatentActions.probabilities", self.probabilities).astype(np.float32)
        require_shape("LatentActions.probabilities", probabilities, (None, None))
        horizon, codebook_size = probabilities.shape
        tokens = np.asarray(self.tokens)
        if tokens.dtype.kind not in "iu":
            raise InputError("LatentActions.tokens", "integer code ids", tokens.dtype)
        require_shape("LatentActions.tokens", tokens, (horizon,))
        if horizon == 0 or codebook_size == 0:
            raise InputError(
                "LatentActions.probabilities", "a non-empty (horizon, codebook) table", probabilities.shape
            )
        if tokens.min() < 0 or tokens.max() >= codebook_size:
            raise InputError("LatentActions.tokens", f"code ids in [0, {codebook_size})", tokens.tolist())
        if probabilities.min() < 0.0:
            raise InputError("LatentActions.probabilities", "non-negative probabilities", float(probabilities.min()))
        row_sums = probabilities.sum(axis=1)
        if np.max(np.abs(row_sums - 1.0)) > PROBABILITY_SUM_TOLERANCE:
            raise InputError("LatentActions.probabilities", "rows summing to 1", row_sums.round(4).tolist())
        if not (np.isfinite(self.step_period_s) and self.step_period_s > 0.0):
            raise InputError("LatentActions.step_period_s", "a positive time in seconds", self.step_period_s)
        if self.embedding is not None:
            embedding = require_finite("LatentActions.embedding", self.embedding).astype(np.float32)
            require_shape("LatentActions.embedding", embedding, (horizon, None))
            object.__setattr__(self, "embedding", embedding)
        if self.visual_embedding is not None:
            visual = require_finite("LatentActions.visual_embedding", self.visual_embedding).astype(np.float32)
            width = self.embedding.shape[1] if self.embedding is not None else None
            require_shape("LatentActions.visual_embedding", visual, (width,))
            object.__setattr__(self, "visual_embedding", visual)
        object.__setattr__(self, "tokens", tokens.astype(np.int64))
        object.__setattr__(self, "probabilities", probabilities)
        object.__setattr__(self, "source", LatentSource(self.source))

    @property
    def horizon(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.probabilities.shape[1])
