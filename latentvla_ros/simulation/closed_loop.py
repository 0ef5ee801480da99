"""Drive a planner around a world in closed loop, without ROS (for logging, tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.planning.interface import PlannerInput, PrivilegedView
from latentvla_ros.simulation.controller import TrajectoryTracker
from latentvla_ros.simulation.expert import ExpertPlanner
from latentvla_ros.simulation.perturbation import Perturbation, PerturbationSchedule
from latentvla_ros.simulation.route import closest_on_polyline
from latentvla_ros.simulation.world import DrivingWorld


@dataclass
class StepRecord:
    """What one closed-loop step saw and decided, before the world moved on."""

    ego: EgoState
    trajectory: Trajectory
    episode: int
    acceleration_mps2: float
    steering_rad: float
    # An injected perturbation that starts at this step (DART-style), and whether one is active.
    perturbation_started: Perturbation | None = None
    perturbed: bool = False


@dataclass
class DriveSummary:
    steps: int = 0
    at_fault_collisions: int = 0
    collisions: int = 0
    off_road_steps: int = 0
    episodes: int = 0


def privileged_input(world: DrivingWorld, ego: EgoState | None = None) -> PlannerInput:
    ego = ego or world.ego_state()
    view = PrivilegedView(
        agents=world.agents(), route=world.episode.route, cruise_speed_mps=world.episode.cruise_speed_mps
    )
    return PlannerInput(stamp_ns=ego.stamp_ns, ego_state=ego, driving_command=world.episode.command, privileged=view)


def drive_expert(
    world: DrivingWorld,
    duration_s: float,
    on_step: Callable[[DrivingWorld, StepRecord], None] | None = None,
    perturbations: PerturbationSchedule | None = None,
) -> DriveSummary:
    """The expert plans every step, the tracker follows its plan; returns what happened.

    ``on_step(world, record)`` is called after planning and before the world
    steps, so the world still shows the state the plan was made for. With
    ``perturbations`` the tracker's command is overridden while an injection is
    active; the expert keeps planning from the actual state, so it recovers.
    """
    expert = ExpertPlanner(world.episode.road.network)
    tracker = TrajectoryTracker()
    summary = DriveSummary(episodes=1)
    expert.reset(world.episode.route, world.episode.cruise_speed_mps)
    steps = round(duration_s / world.dt_s)
    for _ in range(steps):
        ego = world.ego_state()
        trajectory = expert.compute_trajectory(privileged_input(world, ego))
        tracker.set_trajectory(trajectory, ego)
        acceleration, steering = tracker.command(ego, world.dt_s)
        started = None
        perturbed = False
        if perturbations is not None:
            acceleration, steering, started = perturbations.apply(ego.stamp_ns, ego.speed_mps, acceleration, steering)
            perturbed = perturbations.current is not None
        if on_step is not None:
            record = StepRecord(ego, trajectory, world.episode_index, acceleration, steering, started, perturbed)
            on_step(world, record)
        events = world.step(acceleration, steering)
        summary.steps += 1
        summary.collisions += len(events.collisions)
        summary.at_fault_collisions += sum(c.at_fault for c in events.collisions)
        summary.off_road_steps += int(events.off_road)
        if events.episode_started:
            summary.episodes += 1
            expert.network = world.episode.road.network
            expert.reset(world.episode.route, world.episode.cruise_speed_mps)
            tracker.reset()
            if perturbations is not None:
                perturbations.reset_episode(world.time_ns)
    return summary


def lateral_error_m(path_points: np.ndarray, position: np.ndarray) -> float:
    """Distance (m) from ``position`` (2,) to the polyline ``path_points`` (N, 2)."""
    return closest_on_polyline(path_points, position)[2]
