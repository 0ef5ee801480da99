"""The one planner contract every planner implements (NAVSIM's AbstractAgent idea).

The LatentVLA planner, its no-fusion ablation, the constant-velocity baseline
and the simulator's privileged expert all map a :class:`PlannerInput` to a
:class:`~latentvla_ros.core.trajectory.Trajectory`, so replay and closed-loop
evaluation treat them alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.trajectory import Trajectory


@dataclass(frozen=True)
class PrivilegedView:
    """What only a simulator knows: every agent and the route (for the expert)."""

    agents: list = field(default_factory=list)  # list[AgentState]
    route: list = field(default_factory=list)  # list of highway-env lane indices
    cruise_speed_mps: float = 25.0


@dataclass(frozen=True)
class PlannerInput:
    """``camera_frames``: (T, H, W, 3) uint8, oldest first, the newest at ``stamp_ns``;
    ``ego_history``: the ego states over the same window, oldest first."""

    stamp_ns: int
    ego_state: EgoState
    driving_command: DrivingCommand = DrivingCommand.UNKNOWN
    ego_history: tuple[EgoState, ...] = ()
    camera_frames: np.ndarray | None = None
    privileged: PrivilegedView | None = None


class Planner(ABC):
    """Maps a planner input to a trajectory in the ego frame at the input stamp."""

    name: str = "planner"

    @abstractmethod
    def compute_trajectory(self, planner_input: PlannerInput) -> Trajectory: ...

    def reset(self) -> None:  # noqa: B027 - optional hook, most planners are stateless
        """Forget per-drive state (a new episode started)."""


class ConstantVelocityPlanner(Planner):
    """NAVSIM's constant-velocity baseline: hold the current speed and yaw rate."""

    name = "constant_velocity"

    def compute_trajectory(self, planner_input: PlannerInput) -> Trajectory:
        ego = planner_input.ego_state
        return Trajectory.constant_velocity(ego.speed_mps, ego.yaw_rate_rps)
