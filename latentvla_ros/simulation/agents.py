"""Other road users as the ego's planner and the evaluation see them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AgentState:
    """A vehicle in the ROS map frame: pose, speed along its heading, yaw rate, box size."""

    agent_id: int
    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float
    yaw_rate_rps: float
    length_m: float
    width_m: float

    def corners(self) -> np.ndarray:
        """(4, 2) footprint corners, counter-clockwise from front-left."""
        return box_corners(np.array([self.x_m, self.y_m, self.yaw_rad]), self.length_m, self.width_m)


def box_corners(pose: np.ndarray, length_m: float, width_m: float) -> np.ndarray:
    """(..., 4, 2) corners of boxes centred at poses (..., 3)."""
    pose = np.asarray(pose, dtype=np.float64)
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64) * [length_m / 2, width_m / 2]
    cos_yaw, sin_yaw = np.cos(pose[..., 2])[..., None], np.sin(pose[..., 2])[..., None]
    x = pose[..., 0][..., None] + cos_yaw * half[:, 0] - sin_yaw * half[:, 1]
    y = pose[..., 1][..., None] + sin_yaw * half[:, 0] + cos_yaw * half[:, 1]
    return np.stack([x, y], axis=-1)


def predict_constant_turn_rate(agents: list[AgentState], times_s: np.ndarray) -> np.ndarray:
    """(A, T, 3) poses of each agent holding its speed and yaw rate (CTRV) at ``times_s``."""
    if not agents:
        return np.zeros((0, len(times_s), 3))
    state = np.array([[a.x_m, a.y_m, a.yaw_rad, a.speed_mps, a.yaw_rate_rps] for a in agents])
    x0, y0, yaw0, speed, yaw_rate = (state[:, i : i + 1] for i in range(5))
    t = np.asarray(times_s)[None, :]
    yaw = yaw0 + yaw_rate * t
    turning = np.abs(yaw_rate) > 1e-3
    safe_rate = np.where(turning, yaw_rate, 1.0)
    x_turn = x0 + speed / safe_rate * (np.sin(yaw) - np.sin(yaw0))
    y_turn = y0 - speed / safe_rate * (np.cos(yaw) - np.cos(yaw0))
    x_straight = x0 + speed * np.cos(yaw0) * t
    y_straight = y0 + speed * np.sin(yaw0) * t
    x = np.where(turning, x_turn, x_straight)
    y = np.where(turning, y_turn, y_straight)
    return np.stack([x, y, yaw], axis=-1)
