"""Driving scenarios on highway-env road networks, as seeded episodes.

Each episode is a road with traffic, an ego vehicle at the start of a route
and the NAVSIM driving command that route implies. Roads come from
highway-env's own builders (highway, merge, roundabout, intersection);
traffic is highway-env's IDM/MOBIL vehicles, placed here so its density is
configurable. A scenario runs episodes back to back: a log of N minutes is
as many episodes as fit, each starting where the route starts.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

import numpy as np
from highway_env.envs.intersection_env import IntersectionEnv
from highway_env.envs.merge_env import MergeEnv
from highway_env.envs.roundabout_env import RoundaboutEnv
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.behavior import IDMVehicle
from highway_env.vehicle.kinematics import Vehicle

from latentvla_ros.core.driving_command import DrivingCommand, command_from_heading_change
from latentvla_ros.core.se2 import wrap_angle
from latentvla_ros.simulation.highway_frames import angle_to_ros
from latentvla_ros.simulation.route import LaneIndex

SCENARIO_NAMES = ("highway", "merge", "roundabout", "intersection")
HIGHWAY_LENGTH_M = 3000.0
HIGHWAY_LANES = 3


@dataclass(frozen=True)
class ScenarioConfig:
    """``traffic_density`` scales each scenario's default number of other vehicles.

    The spreads vary each episode (fractions: 0.3 draws a factor in [0.7, 1.3]) so a
    log holds many cruise speeds and traffic densities, not one steady drive.
    """

    name: str
    seed: int = 0
    traffic_density: float = 1.0
    episode_duration_s: float = 60.0
    cruise_speed_spread: float = 0.0
    traffic_density_spread: float = 0.0
    # A perturbation start: the ego begins each episode this far beside its lane (m, to the
    # left; alternating sides by episode) and turned by this much (rad), so a planner must recover.
    start_lateral_offset_m: float = 0.0
    start_heading_offset_rad: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SCENARIO_NAMES:
            raise ValueError(f"scenario: expected one of {', '.join(SCENARIO_NAMES)}, got {self.name!r}")
        if not self.traffic_density >= 0.0:
            raise ValueError(f"traffic_density: expected >= 0, got {self.traffic_density}")
        if not self.episode_duration_s > 0.0:
            raise ValueError(f"episode_duration_s: expected > 0, got {self.episode_duration_s}")
        for name in ("cruise_speed_spread", "traffic_density_spread"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Episode:
    """One drive: the road (with traffic), the ego vehicle, its route and command."""

    scenario: ScenarioConfig
    index: int
    road: Road
    ego: Vehicle
    route: list[LaneIndex]
    command: DrivingCommand
    cruise_speed_mps: float
    rng: np.random.Generator
    spawner: object | None = None  # intersection: keeps highway-env's spawning of new traffic


def episode_seed(scenario: ScenarioConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([scenario.seed, index, SCENARIO_NAMES.index(scenario.name)])


def command_for_route(network: RoadNetwork, route: list[LaneIndex]) -> DrivingCommand:
    """Left / straight / right from the heading change between the route's first and last lane."""
    first, last = network.get_lane(route[0]), network.get_lane(route[-1])
    return command_from_heading_change(
        float(wrap_angle(angle_to_ros(last.heading_at(last.length) - first.heading_at(0.0))))
    )


def _route_lanes(network: RoadNetwork, nodes: list[str], lane_id: int = 0) -> list[LaneIndex]:
    """Lane indices along a node path, keeping ``lane_id`` where the road has it."""
    lanes = []
    for start, end in itertools.pairwise(nodes):
        count = len(network.graph[start][end])
        lanes.append((start, end, min(lane_id, count - 1)))
    return lanes


class EgoVehicle(Vehicle):
    """highway-env's kinematic bicycle, driven by our (acceleration, steering) commands.

    Other vehicles' yielding rules ask every vehicle for a constant-speed,
    zero-steering prediction; the base class computes it by deep-copying the
    vehicle and stepping the copy, which dominated the intersection's cost.
    This is the same straight line in closed form.
    """

    def predict_trajectory_constant_speed(self, times: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        if self.crashed:  # the base class brakes a crashed copy to a stop where it is
            return [self.position.copy() for _ in times], [self.heading for _ in times]
        direction = np.array([np.cos(self.heading), np.sin(self.heading)])
        return [self.position + self.speed * t * direction for t in times], [self.heading for _ in times]


def _place_ego(road: Road, lane_index: LaneIndex, longitudinal_m: float, speed_mps: float) -> Vehicle:
    lane = road.network.get_lane(lane_index)
    ego = EgoVehicle(road, lane.position(longitudinal_m, 0.0), lane.heading_at(longitudinal_m), speed_mps)
    ego.lane_index = lane_index
    ego.lane = lane
    road.vehicles.append(ego)
    return ego


def spawn_idm_vehicle(
    road: Road,
    lane_index: LaneIndex,
    longitudinal_m: float,
    speed_mps: float,
    rng: np.random.Generator,
    destination: str | None = None,
    min_gap_m: float = 18.0,
) -> IDMVehicle | None:
    """An IDM/MOBIL vehicle on ``lane_index`` unless one is closer than ``min_gap_m``."""
    lane = road.network.get_lane(lane_index)
    position = lane.position(longitudinal_m, 0.0)
    if any(np.linalg.norm(other.position - position) < min_gap_m for other in road.vehicles):
        return None
    vehicle = IDMVehicle(road, position, lane.heading_at(longitudinal_m), speed_mps, target_lane_index=lane_index)
    vehicle.target_speed = speed_mps
    if destination is not None:
        vehicle.plan_route_to(destination)
    vehicle.randomize_behavior()
    road.vehicles.append(vehicle)
    return vehicle


def _highway(scenario: ScenarioConfig, index: int, rng: np.random.Generator) -> Episode:
    network = RoadNetwork.straight_road_network(HIGHWAY_LANES, length=HIGHWAY_LENGTH_M, speed_limit=30.0)
    road = Road(network=network, np_random=rng, record_history=False)
    ego_lane = ("0", "1", int(rng.integers(HIGHWAY_LANES)))
    ego = _place_ego(road, ego_lane, 50.0, 25.0)
    for _ in range(round(14 * scenario.traffic_density)):
        lane = ("0", "1", int(rng.integers(HIGHWAY_LANES)))
        spawn_idm_vehicle(road, lane, 50.0 + rng.uniform(-40.0, 300.0), rng.uniform(19.0, 25.0), rng)
    route = [("0", "1", ego_lane[2])]
    return Episode(scenario, index, road, ego, route, DrivingCommand.STRAIGHT, 28.0, rng)


def _merge(scenario: ScenarioConfig, index: int, rng: np.random.Generator) -> Episode:
    builder = MergeEnv()
    builder.np_random = rng
    builder._make_road()
    road = Road(network=builder.road.network, np_random=rng, record_history=False)
    # Alternate: merging in from the on-ramp, and driving the main road past merging traffic.
    from_ramp = index % 2 == 0
    if from_ramp:
        ego = _place_ego(road, ("j", "k", 0), 20.0, 18.0)
        route = [("j", "k", 0), ("k", "b", 0), ("b", "c", 2), ("c", "d", 1)]
    else:
        lane_id = int(rng.integers(2))
        ego = _place_ego(road, ("a", "b", lane_id), 20.0, 20.0)
        route = [("a", "b", lane_id), ("b", "c", lane_id), ("c", "d", lane_id)]
    for _ in range(round(6 * scenario.traffic_density)):
        lane = ("a", "b", int(rng.integers(2)))
        spawn_idm_vehicle(road, lane, rng.uniform(0.0, 220.0), rng.uniform(16.0, 21.0), rng)
    for _ in range(round(2 * scenario.traffic_density)):
        spawn_idm_vehicle(road, ("j", "k", 0), rng.uniform(0.0, 140.0), rng.uniform(14.0, 19.0), rng)
    return Episode(scenario, index, road, ego, route, command_for_route(road.network, route), 20.0, rng)


def _roundabout(scenario: ScenarioConfig, index: int, rng: np.random.Generator) -> Episode:
    builder = RoundaboutEnv()
    builder.np_random = rng
    builder._make_road()
    road = Road(network=builder.road.network, np_random=rng, record_history=False)
    exits = ["exr", "nxr", "wxr"]
    destination = exits[int(rng.integers(len(exits)))]
    ego = _place_ego(road, ("ser", "ses", 0), 60.0, 10.0)
    route = _route_lanes(road.network, road.network.shortest_path("ser", destination))
    all_exits = ["exr", "nxr", "wxr", "sxr"]
    for _ in range(round(4 * scenario.traffic_density)):
        circle = [("se", "ex"), ("ex", "ee"), ("ee", "nx"), ("nx", "ne"), ("ne", "wx"), ("wx", "we"), ("we", "sx")]
        start, end = circle[int(rng.integers(1, len(circle)))]
        lane = (start, end, int(rng.integers(2)))
        spawn_idm_vehicle(road, lane, rng.uniform(0.0, 10.0), rng.uniform(7.0, 10.0), rng, rng.choice(all_exits))
    for entry in ("eer", "ner", "wer"):
        for _ in range(round(1 * scenario.traffic_density)):
            spawn_idm_vehicle(
                road, (entry, entry[:2] + "s", 0), rng.uniform(40.0, 110.0), 9.0, rng, rng.choice(all_exits)
            )
    return Episode(scenario, index, road, ego, route, command_for_route(road.network, route), 10.0, rng)


# highway-env's intersection checks every pair of vehicles for conflicts (deep
# predictions, O(n^2)): its cost grows fast with traffic. At density 1 these keep
# about 10 vehicles around the junction, enough to queue and yield, at ~6 ms a step.
INTERSECTION_SPAWN_PROBABILITY = 0.12
INTERSECTION_MAX_VEHICLES = 10


class IntersectionTraffic:
    """highway-env's own intersection traffic: spawn at the approaches, clear on exit."""

    def __init__(self, rng: np.random.Generator, density: float) -> None:
        self.builder = IntersectionEnv()
        self.builder.np_random = rng
        self.builder.config["spawn_probability"] = min(1.0, INTERSECTION_SPAWN_PROBABILITY * density)
        self.builder._make_road()
        self.density = density
        self.max_vehicles = round(INTERSECTION_MAX_VEHICLES * density)

    @property
    def road(self):
        return self.builder.road

    def populate(self, count: int) -> None:
        for offset in np.linspace(0.0, 80.0, max(count, 1))[:count]:
            self.builder._spawn_vehicle(offset, spawn_probability=1.0)

    def step(self) -> None:
        self.builder._clear_vehicles()
        if self.density > 0.0 and len(self.builder.road.vehicles) <= self.max_vehicles:
            self.builder._spawn_vehicle(spawn_probability=self.builder.config["spawn_probability"])


def _intersection(scenario: ScenarioConfig, index: int, rng: np.random.Generator) -> Episode:
    traffic = IntersectionTraffic(rng, scenario.traffic_density)
    road = traffic.road
    road.vehicles = []
    destination = ["o1", "o2", "o3"][int(rng.integers(3))]
    traffic.populate(round(5 * scenario.traffic_density))
    # Keep the start clear: highway-env spawns near the ego's approach too.
    ego_lane = road.network.get_lane(("o0", "ir0", 0))
    start = ego_lane.position(40.0, 0.0)
    road.vehicles = [v for v in road.vehicles if np.linalg.norm(v.position - start) > 25.0]
    ego = _place_ego(road, ("o0", "ir0", 0), 40.0, 8.0)
    traffic.builder.controlled_vehicles = [ego]  # highway-env's clean-up must not remove the ego
    route = _route_lanes(road.network, road.network.shortest_path("o0", destination))
    command = command_for_route(road.network, route)
    return Episode(scenario, index, road, ego, route, command, 9.0, rng, spawner=traffic)


_BUILDERS = {"highway": _highway, "merge": _merge, "roundabout": _roundabout, "intersection": _intersection}


def build_episode(scenario: ScenarioConfig, index: int) -> Episode:
    """Episode ``index`` of ``scenario``; the same (scenario, index) always builds the same episode."""
    rng = episode_seed(scenario, index)
    # The spreads draw from their own generator: without spreads an episode is exactly
    # what it was before they existed.
    variety = np.random.default_rng([scenario.seed, index, SCENARIO_NAMES.index(scenario.name), 1])
    speed_factor = 1.0 + scenario.cruise_speed_spread * variety.uniform(-1.0, 1.0)
    density_factor = 1.0 + scenario.traffic_density_spread * variety.uniform(-1.0, 1.0)
    built = replace(scenario, traffic_density=scenario.traffic_density * density_factor)
    episode = _BUILDERS[scenario.name](built, index, rng)
    episode.scenario = scenario
    episode.cruise_speed_mps *= speed_factor
    return episode


def build_road_network(scenario_name: str) -> RoadNetwork:
    """The static road network of a scenario (identical for every episode and seed)."""
    config = ScenarioConfig(scenario_name, traffic_density=0.0)
    return build_episode(config, 0).road.network
