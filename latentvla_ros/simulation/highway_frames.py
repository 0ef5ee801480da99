"""highway-env's frame <-> the ROS frame (REP 103), in one place.

highway-env draws with screen coordinates: x right, y *down*, heading
measured from x towards +y. ROS uses x forward/east, y left/north, yaw
counter-clockwise. The two differ by a mirror about the x axis, so y and
every angle (heading, steering) change sign; speeds and lengths do not.
"""

from __future__ import annotations

import numpy as np


def position_to_ros(position_highway: np.ndarray) -> np.ndarray:
    """(..., 2) highway-env positions -> ROS map-frame positions."""
    position = np.array(position_highway, dtype=np.float64)
    position[..., 1] *= -1.0
    return position


def position_to_highway(position_ros: np.ndarray) -> np.ndarray:
    """(..., 2) ROS map-frame positions -> highway-env positions (the mirror is its own inverse)."""
    return position_to_ros(position_ros)


def angle_to_ros(angle_highway: float | np.ndarray) -> float | np.ndarray:
    """Heading or steering angle, highway-env -> ROS (same formula both ways)."""
    return -angle_highway


angle_to_highway = angle_to_ros
