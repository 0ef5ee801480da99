"""The NAVSIM driving command: the route's next intent, the planner's only map input."""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np

# A heading change beyond this (left positive) makes a route or a drive a turn.
TURN_THRESHOLD_RAD = math.radians(30.0)


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


def command_from_heading_change(change_rad: float) -> DrivingCommand:
    """LEFT / STRAIGHT / RIGHT from a wrapped heading change (rad, counter-clockwise positive)."""
    if change_rad > TURN_THRESHOLD_RAD:
        return DrivingCommand.LEFT
    if change_rad < -TURN_THRESHOLD_RAD:
        return DrivingCommand.RIGHT
    return DrivingCommand.STRAIGHT
