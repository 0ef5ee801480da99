"""The safe-stop trajectory: brake comfortably to a standstill straight ahead.

What the planner publishes (mode SAFE_STOP) when its inputs go stale: no camera, no
odometry or no latent actions means it cannot plan, and the controller must not keep
following an old plan.
"""

from __future__ import annotations

import numpy as np

from latentvla_ros.core.trajectory import NAVSIM_INTERVAL_S, NAVSIM_NUM_POSES, Trajectory

COMFORTABLE_DECELERATION_MPS2 = 2.0  # under NAVSIM's comfort bound on longitudinal deceleration (4.05)


def safe_stop_trajectory(
    speed_mps: float,
    deceleration_mps2: float = COMFORTABLE_DECELERATION_MPS2,
    num_poses: int = NAVSIM_NUM_POSES,
    interval_s: float = NAVSIM_INTERVAL_S,
) -> Trajectory:
    """Poses of constant deceleration from ``speed_mps`` until standstill, then holding."""
    speed = max(0.0, float(speed_mps)) if np.isfinite(speed_mps) else 0.0
    times = interval_s * np.arange(1, num_poses + 1)
    stop_time = speed / deceleration_mps2
    moving = np.minimum(times, stop_time)
    x = speed * moving - 0.5 * deceleration_mps2 * moving**2
    return Trajectory(np.column_stack([x, np.zeros(num_poses), np.zeros(num_poses)]), interval_s)
