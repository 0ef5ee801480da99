"""The ego vehicle's state at one instant, as the planner and the dataset see it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.validation import InputError, require_finite

MAP_FRAME_ID = "map"
EGO_FRAME_ID = "base_link"


@dataclass(frozen=True)
class EgoState:
    """Pose in ``frame_id`` plus body-frame motion (x forward, y left).

    Odometry carries no acceleration: where only one odometry message is known
    the acceleration is zero; the dataset and nodes derive it from consecutive
    states with :meth:`with_acceleration_from`.
    """

    stamp_ns: int
    x_m: float
    y_m: float
    yaw_rad: float
    velocity_x_mps: float
    velocity_y_mps: float = 0.0
    yaw_rate_rps: float = 0.0
    acceleration_x_mps2: float = 0.0
    acceleration_y_mps2: float = 0.0
    frame_id: str = MAP_FRAME_ID
    child_frame_id: str = EGO_FRAME_ID

    def __post_init__(self) -> None:
        for name in (
            "x_m",
            "y_m",
            "yaw_rad",
            "velocity_x_mps",
            "velocity_y_mps",
            "yaw_rate_rps",
            "acceleration_x_mps2",
            "acceleration_y_mps2",
        ):
            require_finite(f"EgoState.{name}", getattr(self, name))
        if self.stamp_ns < 0:
            raise InputError("EgoState.stamp_ns", "a non-negative time in nanoseconds", self.stamp_ns)

    @property
    def speed_mps(self) -> float:
        return math.hypot(self.velocity_x_mps, self.velocity_y_mps)

    @property
    def pose(self) -> np.ndarray:
        """(3,) x_m, y_m, yaw_rad in ``frame_id``."""
        return np.array([self.x_m, self.y_m, self.yaw_rad])

    def status_vector(self) -> np.ndarray:
        """(5,) float32 NAVSIM-style ego status: vx, vy, ax, ay, yaw rate (body frame)."""
        return np.array(
            [
                self.velocity_x_mps,
                self.velocity_y_mps,
                self.acceleration_x_mps2,
                self.acceleration_y_mps2,
                self.yaw_rate_rps,
            ],
            dtype=np.float32,
        )

    def with_acceleration_from(self, previous: EgoState) -> EgoState:
        """This state with acceleration differenced from an earlier state's velocity.

        Differences are taken in the current body frame (the previous velocity is
        rotated by the heading change), so turning at constant speed gives zero
        longitudinal acceleration.
        """
        dt_s = (self.stamp_ns - previous.stamp_ns) * 1e-9
        if dt_s <= 0.0:
            raise InputError("EgoState.stamp_ns", f"later than the previous state's {previous.stamp_ns}", self.stamp_ns)
        heading_change = self.yaw_rad - previous.yaw_rad
        cos_h, sin_h = math.cos(heading_change), math.sin(heading_change)
        prev_vx = cos_h * previous.velocity_x_mps + sin_h * previous.velocity_y_mps
        prev_vy = -sin_h * previous.velocity_x_mps + cos_h * previous.velocity_y_mps
        return EgoState(
            stamp_ns=self.stamp_ns,
            x_m=self.x_m,
            y_m=self.y_m,
            yaw_rad=self.yaw_rad,
            velocity_x_mps=self.velocity_x_mps,
            velocity_y_mps=self.velocity_y_mps,
            yaw_rate_rps=self.yaw_rate_rps,
            acceleration_x_mps2=(self.velocity_x_mps - prev_vx) / dt_s,
            acceleration_y_mps2=(self.velocity_y_mps - prev_vy) / dt_s,
            frame_id=self.frame_id,
            child_frame_id=self.child_frame_id,
        )
