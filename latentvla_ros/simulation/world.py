"""The closed-loop driving world: highway-env traffic around an ego vehicle
driven by continuous commands (acceleration, steering), in the ROS frame.

The world steps at a fixed ``dt_s`` (10 Hz by default, like the camera),
keeps simulated time across episodes, and tracks what evaluation needs:
collisions with fault attribution, leaving the drivable area, route progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.se2 import relative_poses, wrap_angle
from latentvla_ros.simulation.agents import AgentState
from latentvla_ros.simulation.highway_frames import angle_to_highway, angle_to_ros, position_to_ros
from latentvla_ros.simulation.route import LanePath, build_lane_path
from latentvla_ros.simulation.scenarios import (
    HIGHWAY_LANES,
    Episode,
    ScenarioConfig,
    build_episode,
    spawn_idm_vehicle,
)

MAX_STEERING_RAD = 0.6
ACCELERATION_LIMITS_MPS2 = (-8.0, 4.0)
# The route counts as completed this far before its end (the road ends there).
ROUTE_END_MARGIN_M = 15.0
# After a crash the ego is left standing this long (so logs show it), then a new episode starts.
CRASH_HOLD_S = 1.0
# Other vehicles farther than this from the ego are not simulated in detail: they are
# removed (highway: recycled ahead) to keep the cost per step constant over long logs.
HIGHWAY_KEEP_BEHIND_M = 80.0


@dataclass(frozen=True)
class Collision:
    time_s: float
    episode: int
    other_id: int
    at_fault: bool
    ego_speed_mps: float


@dataclass
class WorldEvents:
    """What happened in one step."""

    collisions: list[Collision] = field(default_factory=list)
    off_road: bool = False
    episode_started: bool = False


class DrivingWorld:
    """Step with :meth:`step`; read :meth:`ego_state`, :meth:`agents`, :attr:`episode`."""

    def __init__(self, scenario: ScenarioConfig, dt_s: float = 0.1, substeps: int = 1) -> None:
        if dt_s <= 0.0 or substeps < 1:
            raise ValueError(f"dt_s must be > 0 and substeps >= 1, got {dt_s}, {substeps}")
        self.scenario = scenario
        self.dt_s = dt_s
        self.substeps = substeps
        self.time_ns = 0
        self.episode_index = -1
        self.collisions: list[Collision] = []
        self.off_road_steps = 0
        self.steps = 0
        self._next_id = 1
        self._previous_headings: dict[int, float] = {}
        self._crash_time_s: float | None = None
        self.episode: Episode
        self._start_episode()

    # --- episodes -------------------------------------------------------------------

    def _start_episode(self) -> None:
        self.episode_index += 1
        self.episode = build_episode(self.scenario, self.episode_index)
        self._perturb_start()
        self.episode_start_ns = self.time_ns
        self._crash_time_s = None
        self._previous_headings = {}
        self.route_path = self._build_route_path()

    def _perturb_start(self) -> None:
        lateral, heading = self.scenario.start_lateral_offset_m, self.scenario.start_heading_offset_rad
        if lateral == 0.0 and heading == 0.0:
            return
        side = 1.0 if self.episode_index % 2 == 0 else -1.0
        ego = self.episode.ego
        # highway-env's frame has y pointing right: its left normal is (sin, -cos) of the heading.
        normal = np.array([np.sin(ego.heading), -np.cos(ego.heading)])
        ego.position = np.asarray(ego.position, dtype=float) + side * lateral * normal
        ego.heading = ego.heading - side * heading  # turned towards the side it was moved to

    def _build_route_path(self) -> LanePath:
        return build_lane_path(self.episode.road.network, self.episode.route)

    @property
    def time_s(self) -> float:
        return self.time_ns * 1e-9

    @property
    def episode_time_s(self) -> float:
        return (self.time_ns - self.episode_start_ns) * 1e-9

    @property
    def ego(self):
        return self.episode.ego

    def route_progress_m(self) -> float:
        arc_length, _ = self.route_path.project(self.ego_state().pose[:2])
        return float(arc_length)

    def _episode_finished(self) -> bool:
        if self.episode_time_s >= self.scenario.episode_duration_s:
            return True
        if self._crash_time_s is not None and self.time_s - self._crash_time_s >= CRASH_HOLD_S:
            return True
        return self.route_progress_m() >= self.route_path.length_m - ROUTE_END_MARGIN_M

    # --- state in the ROS frame ------------------------------------------------------

    def vehicle_id(self, vehicle) -> int:
        """A stable id per vehicle, kept on the vehicle itself: Python's id() is reused when
        highway-env removes a vehicle and spawns another at the same address, which gave new
        vehicles old ids (and colours) depending on the allocator, so recordings differed run to run."""
        identity = getattr(vehicle, "_latentvla_id", None)
        if identity is None:
            identity = self._next_id
            self._next_id += 1
            vehicle._latentvla_id = identity
        return identity

    def ego_state(self) -> EgoState:
        ego = self.ego
        position = position_to_ros(ego.position)
        beta = np.arctan(0.5 * np.tan(ego.action.get("steering", 0.0))) if ego.action else 0.0
        yaw_rate_highway = ego.speed * np.sin(beta) / (ego.LENGTH / 2)
        return EgoState(
            stamp_ns=self.time_ns,
            x_m=float(position[0]),
            y_m=float(position[1]),
            yaw_rad=float(wrap_angle(angle_to_ros(ego.heading))),
            # The bicycle model's velocity points along heading + slip angle.
            velocity_x_mps=float(ego.speed * np.cos(beta)),
            velocity_y_mps=float(angle_to_ros(ego.speed * np.sin(beta))),
            yaw_rate_rps=float(angle_to_ros(yaw_rate_highway)),
            acceleration_x_mps2=float(ego.action.get("acceleration", 0.0)) if ego.action else 0.0,
        )

    def agents(self) -> list[AgentState]:
        """Every other vehicle, yaw rate from its heading change over the last step."""
        states = []
        for vehicle in self.episode.road.vehicles:
            if vehicle is self.ego:
                continue
            key = self.vehicle_id(vehicle)
            previous = self._previous_headings.get(key, vehicle.heading)
            position = position_to_ros(vehicle.position)
            states.append(
                AgentState(
                    agent_id=key,
                    x_m=float(position[0]),
                    y_m=float(position[1]),
                    yaw_rad=float(wrap_angle(angle_to_ros(vehicle.heading))),
                    speed_mps=float(vehicle.speed),
                    yaw_rate_rps=float(angle_to_ros(wrap_angle(vehicle.heading - previous)) / self.dt_s),
                    length_m=float(vehicle.LENGTH),
                    width_m=float(vehicle.WIDTH),
                )
            )
        return states

    # --- stepping --------------------------------------------------------------------

    def step(self, acceleration_mps2: float, steering_rad: float) -> WorldEvents:
        """Advance ``dt_s`` with the ego's commands (ROS frame: positive steering turns left)."""
        events = WorldEvents()
        if not (np.isfinite(acceleration_mps2) and np.isfinite(steering_rad)):
            raise ValueError(f"ego command must be finite, got {acceleration_mps2}, {steering_rad}")
        acceleration = float(np.clip(acceleration_mps2, *ACCELERATION_LIMITS_MPS2))
        steering = float(np.clip(steering_rad, -MAX_STEERING_RAD, MAX_STEERING_RAD))
        if self.ego.speed <= 0.0 and acceleration < 0.0:
            acceleration = 0.0  # brakes do not drive backwards
        road = self.episode.road
        self._previous_headings = {self.vehicle_id(v): v.heading for v in road.vehicles}
        crashed_before = {id(v) for v in road.vehicles if v.crashed}
        for _ in range(self.substeps):
            self.ego.act({"acceleration": acceleration, "steering": angle_to_highway(steering)})
            road.act()
            self.ego.act({"acceleration": acceleration, "steering": angle_to_highway(steering)})
            road.step(self.dt_s / self.substeps)
        self.ego.speed = max(self.ego.speed, 0.0)
        self.time_ns += round(self.dt_s * 1e9)
        self.steps += 1
        if self.episode.spawner is not None:
            self.episode.spawner.step()
        self._record_collisions(crashed_before, events)
        if not self._ego_on_road():
            events.off_road = True
            self.off_road_steps += 1
        self._manage_traffic()
        if self._episode_finished():
            self._start_episode()
            events.episode_started = True
        return events

    def _record_collisions(self, crashed_before: set[int], events: WorldEvents) -> None:
        road = self.episode.road
        if not self.ego.crashed or id(self.ego) in crashed_before:
            # Other vehicles crashing among themselves leave the road (they would block it forever).
            road.vehicles = [v for v in road.vehicles if v is self.ego or not v.crashed or id(v) in crashed_before]
            return
        newly = [v for v in road.vehicles if v is not self.ego and v.crashed and id(v) not in crashed_before]
        if not newly:
            newly = [v for v in road.vehicles if v is not self.ego and v.crashed]
        other = min(newly, key=lambda v: np.linalg.norm(v.position - self.ego.position)) if newly else None
        ego_pose = self.ego_state().pose
        at_fault = True
        if other is not None:
            other_in_ego = relative_poses(ego_pose, np.array([*position_to_ros(other.position), 0.0]))
            rear_ended = other_in_ego[0] < -0.5 * self.ego.LENGTH
            at_fault = not (rear_ended or self.ego.speed < 0.5)
        collision = Collision(
            time_s=self.time_s,
            episode=self.episode_index,
            other_id=self.vehicle_id(other) if other is not None else -1,
            at_fault=at_fault,
            ego_speed_mps=float(self.ego.speed),
        )
        self.collisions.append(collision)
        events.collisions.append(collision)
        self._crash_time_s = self.time_s

    def _ego_on_road(self) -> bool:
        """The ego's centre lies on some lane (highway-env's own lane test, with its lane width)."""
        network = self.episode.road.network
        return any(
            network.get_lane(index).on_lane(self.ego.position, margin=0.3)
            for index in _nearby_lane_indices(network, self.ego.position)
        )

    def _manage_traffic(self) -> None:
        if self.scenario.name != "highway":
            return
        road, ego = self.episode.road, self.ego
        rng = self.episode.rng
        for vehicle in list(road.vehicles):
            if vehicle is ego:
                continue
            behind_m = ego.position[0] - vehicle.position[0]
            if behind_m > HIGHWAY_KEEP_BEHIND_M:
                road.vehicles.remove(vehicle)
                for _attempt in range(3):  # a spot may be taken; try a few before giving up
                    lane = ("0", "1", int(rng.integers(HIGHWAY_LANES)))
                    ahead = ego.position[0] + rng.uniform(180.0, 300.0)
                    if spawn_idm_vehicle(road, lane, ahead, rng.uniform(19.0, 25.0), rng) is not None:
                        break


def _nearby_lane_indices(network, position: np.ndarray, radius_m: float = 30.0) -> list:
    indices = []
    for start, ends in network.graph.items():
        for end, lanes in ends.items():
            for lane_id, lane in enumerate(lanes):
                longitudinal, lateral = lane.local_coordinates(position)
                if -radius_m < longitudinal < lane.length + radius_m and abs(lateral) < radius_m:
                    indices.append((start, end, lane_id))
    return indices
