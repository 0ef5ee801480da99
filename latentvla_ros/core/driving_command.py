"""The NAVSIM driving command: the route's next intent, the planner's only map input."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class DrivingCommand(IntEnum):
    """Index order matches NAVSIM's one-hot driving command."""

    LEFT = 0
    STRAIGHT = 1
    RIGHT = 2
    UNKNOWN = 3

    def one_hot(self) -> np.ndarray:
        """(4,) float32 one-hot vector."""
        vector = np.zeros(len(DrivingCommand), dtype=np.float32)
        vector[int(self)] = 1.0
        return vector
