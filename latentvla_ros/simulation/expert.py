"""The privileged expert driver: the data source and the upper-bound baseline.

It knows the road network, its route and every agent (as PDM-Closed does in
NAVSIM). Each call it

1. builds candidate *corridors* along the route: the current lane and, on
   multi-lane roads, the neighbouring lanes (a lane change is a corridor whose
   lateral offset fades out smoothly);
2. predicts every agent with constant speed and yaw rate and projects the
   predictions into each corridor's path coordinates, so an agent that is,
   or soon will be, on the corridor becomes a space-time obstacle (this is
   how it yields at intersections and roundabouts);
3. rolls out IDM along each corridor against those obstacles, a dead end
   and curve speed limits, and picks the corridor with the most progress
   that is safe (lane changes need a gain and a safe gap behind);
4. returns the rollout as NAVSIM poses in the ego frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.se2 import relative_poses, wrap_angle
from latentvla_ros.core.trajectory import NAVSIM_INTERVAL_S, NAVSIM_NUM_POSES, Trajectory
from latentvla_ros.planning.interface import Planner, PlannerInput
from latentvla_ros.simulation.agents import AgentState, predict_constant_turn_rate
from latentvla_ros.simulation.highway_frames import position_to_highway
from latentvla_ros.simulation.route import LaneIndex, LanePath, build_lane_path, extend_straight

EGO_LENGTH_M = 5.0
EGO_WIDTH_M = 2.0


@dataclass(frozen=True)
class ExpertConfig:
    """Every expert parameter; IDM values are those of a calm human driver."""

    rollout_horizon_s: float = 5.0
    rollout_dt_s: float = 0.25
    max_acceleration_mps2: float = 1.5
    comfortable_deceleration_mps2: float = 3.0
    max_deceleration_mps2: float = 7.0
    time_headway_s: float = 1.2
    standstill_gap_m: float = 3.0
    lateral_acceleration_mps2: float = 2.0
    path_length_m: float = 160.0
    lateral_clearance_m: float = 0.7
    # An agent counts as an obstacle from this long before it reaches the corridor;
    # crossing traffic longer, so the ego waits at a junction's entry rather than inside it.
    occupancy_lead_s: float = 1.5
    crossing_lead_s: float = 3.0
    lane_change_duration_s: float = 3.5
    lane_change_min_gain_m: float = 6.0
    lane_change_rear_gap_s: float = 1.0
    lane_change_cooldown_s: float = 4.0
    # A lane that ends (a lane drop) must be left this far before its end.
    dead_end_lookahead_m: float = 220.0
    # An agent whose own lane ends within this distance will merge: it counts as an obstacle
    # for the neighbouring lane too (its lateral reach grows by merge_reach_m), so the ego
    # yields to it instead of predicting it straight on (constant turn rate cannot see a merge).
    merge_anticipation_m: float = 60.0
    merge_reach_m: float = 2.5


@dataclass(frozen=True)
class Corridor:
    lane: LaneIndex
    path: LanePath
    is_lane_change: bool


@dataclass(frozen=True)
class Rollout:
    times_s: np.ndarray
    arc_length_m: np.ndarray
    speed_mps: np.ndarray
    min_acceleration_mps2: float


class ExpertPlanner(Planner):
    """Call :meth:`reset` with each episode's route; then :meth:`plan` every step."""

    name = "expert"

    def __init__(self, network, config: ExpertConfig | None = None) -> None:
        self.network = network
        self.config = config or ExpertConfig()
        self.route: list[LaneIndex] = []
        self.cruise_speed_mps = 25.0
        self._target_lane: LaneIndex | None = None
        self._last_lane_change_s = -1e9
        self._corridor_cache: dict[tuple[int, LaneIndex], LanePath] = {}
        self.last_corridor: Corridor | None = None

    def reset(self, route: list[LaneIndex] | None = None, cruise_speed_mps: float | None = None) -> None:
        if route is not None:
            self.route = list(route)
        if cruise_speed_mps is not None:
            self.cruise_speed_mps = cruise_speed_mps
        self._target_lane = None
        self._last_lane_change_s = -1e9
        self._corridor_cache = {}

    def compute_trajectory(self, planner_input: PlannerInput) -> Trajectory:
        view = planner_input.privileged
        if view is None:
            raise ValueError("the expert is privileged: PlannerInput.privileged must hold agents and route")
        if list(view.route) != self.route:
            self.reset(list(view.route), view.cruise_speed_mps)
        return self.plan(planner_input.ego_state, view.agents)

    # --- corridors ------------------------------------------------------------------

    def _current_route_edge(self, ego: EgoState) -> tuple[int, LaneIndex]:
        """Index of the route edge the ego is on and the lane it occupies there."""
        position = position_to_highway(ego.pose[:2])
        best = None
        for edge_number, (start, end, _) in enumerate(self.route):
            for lane_id, lane in enumerate(self.network.graph[start][end]):
                longitudinal, lateral = lane.local_coordinates(position)
                outside = max(0.0, -longitudinal, longitudinal - lane.length)
                cost = abs(lateral) + outside + 0.01 * edge_number  # ties: the earlier edge
                if best is None or cost < best[0]:
                    best = (cost, edge_number, (start, end, lane_id))
        return best[1], best[2]

    def _successor(self, lane_index: LaneIndex, next_edge: tuple[str, str]) -> LaneIndex | None:
        """The lane on ``next_edge`` this lane leads into, or None where the lane ends (a lane drop)."""
        lane = self.network.get_lane(lane_index)
        lane_end = lane.position(lane.length, 0.0)
        candidates = self.network.graph[next_edge[0]][next_edge[1]]
        starts = [candidate.position(0.0, 0.0) for candidate in candidates]
        gaps = [float(np.linalg.norm(start - lane_end)) for start in starts]
        best = int(np.argmin(gaps))
        if gaps[best] > 1.0:
            # A neighbour that continues exactly into that start means this lane is the one that ends.
            start, end, _ = lane_index
            for neighbour_id, neighbour in enumerate(self.network.graph[start][end]):
                if neighbour_id != lane_index[2]:
                    neighbour_end = neighbour.position(neighbour.length, 0.0)
                    if np.linalg.norm(neighbour_end - starts[best]) < 1.0:
                        return None
        return (next_edge[0], next_edge[1], best)

    def _full_corridor(self, edge_number: int, lane_index: LaneIndex) -> LanePath:
        """The whole path from the start of ``lane_index`` to the route's end (or a lane drop), cached."""
        key = (edge_number, lane_index)
        if key not in self._corridor_cache:
            lanes = [lane_index]
            dead_end = False
            for start, end, _ in self.route[edge_number + 1 :]:
                successor = self._successor(lanes[-1], (start, end))
                if successor is None:
                    dead_end = True
                    break
                lanes.append(successor)
            path = build_lane_path(self.network, lanes, ends_in_dead_end=dead_end)
            if not dead_end:  # the episode ends at the route's end; do not plan to stop there
                path = extend_straight(path, self.config.path_length_m)
            self._corridor_cache[key] = path
        return self._corridor_cache[key]

    def _corridor(self, ego: EgoState, edge_number: int, lane_index: LaneIndex, is_lane_change: bool) -> Corridor:
        full = self._full_corridor(edge_number, lane_index)
        lane = self.network.get_lane(lane_index)
        # Start at the ego's projection on the corridor, searched near the lane's own
        # coordinate (which alone is off on the bridges between lanes).
        longitudinal, _ = lane.local_coordinates(position_to_highway(ego.pose[:2]))
        start_m = full.project_near(ego.pose[:2], float(np.clip(longitudinal, 0.0, full.length_m)))
        lateral = full.signed_lateral_offset(ego.pose[:2], start_m)
        blend_m = max(15.0, ego.speed_mps * self.config.lane_change_duration_s) if is_lane_change else 12.0
        path = full.window(start_m, self.config.path_length_m, lateral, blend_m)
        return Corridor(lane_index, path, is_lane_change)

    def _candidate_lanes(self, ego: EgoState, edge_number: int, current: LaneIndex) -> list[LaneIndex]:
        start, end, lane_id = current
        count = len(self.network.graph[start][end])
        neighbours = [lane_id + step for step in (-1, 1) if 0 <= lane_id + step < count]
        lanes = [current]
        for neighbour in neighbours:
            lane = self.network.get_lane((start, end, neighbour))
            if not getattr(lane, "forbidden", False):
                lanes.append((start, end, neighbour))
        return lanes

    # --- speed planning -------------------------------------------------------------

    def _rollout(self, corridor: Corridor, ego: EgoState, occupancy: tuple, agents: list[AgentState]) -> Rollout:
        config = self.config
        path = corridor.path
        times = np.arange(0.0, config.rollout_horizon_s + 1e-9, config.rollout_dt_s)
        candidates = _obstacle_candidates(occupancy, agents, len(times), config)
        allowed_speed = _curve_speed_limit(path, config, self.cruise_speed_mps)
        arc_length = np.zeros_like(times)
        speed = np.zeros_like(times)
        speed[0] = ego.speed_mps
        min_acceleration = np.inf
        for k in range(len(times) - 1):
            s, v = arc_length[k], speed[k]
            desired = max(0.1, float(np.interp(s, path.arc_length_m, allowed_speed)))
            gap, leader_speed = np.inf, 0.0
            obstacle_s, obstacle_speed, half_length = candidates[k]
            ahead = obstacle_s > s - EGO_LENGTH_M / 2
            if ahead.any():
                gaps = obstacle_s[ahead] - s - EGO_LENGTH_M / 2 - half_length[ahead]
                nearest = int(np.argmin(gaps))
                gap, leader_speed = float(gaps[nearest]), float(obstacle_speed[ahead][nearest])
            if path.ends_in_dead_end:
                end_gap = path.length_m - s - EGO_LENGTH_M / 2 - 1.0
                if end_gap < gap:
                    gap, leader_speed = end_gap, 0.0
            acceleration = _idm(v, desired, gap, leader_speed, config)
            min_acceleration = min(min_acceleration, acceleration)
            new_speed = max(0.0, v + acceleration * config.rollout_dt_s)
            arc_length[k + 1] = s + 0.5 * (v + new_speed) * config.rollout_dt_s
            speed[k + 1] = new_speed
        return Rollout(times, arc_length, speed, float(min_acceleration))

    def _rear_gap_safe(self, rollout: Rollout, occupancy: tuple, agents: list[AgentState]) -> bool:
        """No agent behind in the target lane would have to brake hard for us."""
        if not agents:
            return True
        obstacle_s, obstacle_speed, occupied, _ = occupancy
        for a, agent in enumerate(agents):
            behind = occupied[a] & (obstacle_s[a] < rollout.arc_length_m)
            if not behind.any():
                continue
            gaps = rollout.arc_length_m - obstacle_s[a] - (EGO_LENGTH_M + agent.length_m) / 2
            needed = np.maximum(2.0, obstacle_speed[a] * self.config.lane_change_rear_gap_s)
            if np.any(behind & (gaps < needed)):
                return False
        return True

    # --- the plan ---------------------------------------------------------------------

    def plan(self, ego: EgoState, agents: list[AgentState]) -> Trajectory:
        config = self.config
        times = np.arange(0.0, config.rollout_horizon_s + 1e-9, config.rollout_dt_s)
        predictions = predict_constant_turn_rate(agents, times)
        merging = np.array([self._merging_soon(agent) for agent in agents], dtype=bool)
        edge_number, current = self._current_route_edge(ego)
        if self._target_lane is not None and self._target_lane[:2] != current[:2]:
            self._target_lane = None  # moved on to the next road: the lane change is over
        candidates = self._candidate_lanes(ego, edge_number, current)
        now_s = ego.stamp_ns * 1e-9
        results = []
        for lane in candidates:
            committed = lane == self._target_lane
            is_change = lane != current
            corridor = self._corridor(ego, edge_number, lane, is_change)
            occupancy = _occupancy(corridor.path, predictions, agents, config, merging)
            rollout = self._rollout(corridor, ego, occupancy, agents)
            score = float(rollout.arc_length_m[-1])
            safe = rollout.min_acceleration_mps2 > -config.max_deceleration_mps2 + 1e-6 or not is_change
            if is_change:
                safe = safe and self._rear_gap_safe(rollout, occupancy, agents)
                safe = safe and rollout.min_acceleration_mps2 > -config.comfortable_deceleration_mps2
                if not committed:
                    score -= config.lane_change_min_gain_m
                    if now_s - self._last_lane_change_s < config.lane_change_cooldown_s:
                        safe = False
            if corridor.path.ends_in_dead_end and corridor.path.length_m < config.dead_end_lookahead_m:
                score -= 1000.0  # leave a lane that ends whenever it is safe to
            results.append((safe, score, lane, corridor, rollout))
        safe_results = [r for r in results if r[0]] or [r for r in results if not r[3].is_lane_change]
        _, _, lane, corridor, rollout = max(safe_results, key=lambda r: r[1])
        if lane != current and lane != self._target_lane:
            self._target_lane = lane
            self._last_lane_change_s = now_s
        elif lane == current:
            self._target_lane = None
        self.last_corridor = corridor
        return self._trajectory(ego, corridor, rollout)

    def _merging_soon(self, agent: AgentState) -> bool:
        """The agent's lane ends (a lane drop: no lane of its index on any next road) within
        ``merge_anticipation_m`` ahead of it."""
        position = position_to_highway(np.array([agent.x_m, agent.y_m]))
        start, end, index = self.network.get_closest_lane_index(position)
        next_roads = self.network.graph.get(end, {})
        if not next_roads or any(len(lanes) > index for lanes in next_roads.values()):
            return False  # continues (or the network ends: an exit, not a merge)
        lane = self.network.get_lane((start, end, index))
        longitudinal, _ = lane.local_coordinates(position)
        return lane.length - longitudinal < self.config.merge_anticipation_m

    def _trajectory(self, ego: EgoState, corridor: Corridor, rollout: Rollout) -> Trajectory:
        output_times = NAVSIM_INTERVAL_S * np.arange(1, NAVSIM_NUM_POSES + 1)
        arc_length = np.interp(output_times, rollout.times_s, rollout.arc_length_m)
        poses_map = corridor.path.pose_at(arc_length)
        poses_ego = relative_poses(ego.pose, poses_map)
        # The path starts at the ego's projection; with no motion every pose is the current pose.
        stopped = arc_length < 1e-3
        poses_ego[stopped] = 0.0
        return Trajectory(poses_ego, NAVSIM_INTERVAL_S)


# --- helpers on paths ---------------------------------------------------------------------


def _idm(speed: float, desired: float, gap: float, leader_speed: float, config: ExpertConfig) -> float:
    free = 1.0 - (speed / desired) ** 4
    if np.isfinite(gap):
        approach = (
            speed
            * (speed - leader_speed)
            / (2.0 * np.sqrt(config.max_acceleration_mps2 * config.comfortable_deceleration_mps2))
        )
        desired_gap = config.standstill_gap_m + max(0.0, speed * config.time_headway_s + approach)
        interaction = (desired_gap / max(gap, 0.1)) ** 2
    else:
        interaction = 0.0
    acceleration = config.max_acceleration_mps2 * (free - interaction)
    return float(np.clip(acceleration, -config.max_deceleration_mps2, config.max_acceleration_mps2))


def _curve_speed_limit(path: LanePath, config: ExpertConfig, cruise_speed_mps: float) -> np.ndarray:
    """(M,) speed allowed at each sample: cruise, lane limit, curvature, braking ahead of curves."""
    curvature = np.abs(path.curvature())
    kernel = np.ones(9) / 9.0  # smooth away the sampling noise of blended paths
    curvature = np.convolve(np.pad(curvature, 4, mode="edge"), kernel, mode="valid")
    limit = np.minimum(cruise_speed_mps, path.speed_limit_mps)
    limit = np.minimum(limit, np.sqrt(config.lateral_acceleration_mps2 / np.maximum(curvature, 1e-4)))
    # Reach each limit by comfortable braking from further back:
    # allowed_i^2 = min_{j >= i} (limit_j^2 + 2 b (s_j - s_i)), a reverse cumulative minimum.
    braking = 2.0 * config.comfortable_deceleration_mps2
    reachable = np.minimum.accumulate((limit**2 + braking * path.arc_length_m)[::-1])[::-1]
    allowed = np.sqrt(np.maximum(reachable - braking * path.arc_length_m, 0.0))
    return allowed


def _obstacle_candidates(occupancy: tuple, agents: list[AgentState], steps: int, config: ExpertConfig) -> list:
    """Per rollout step k: (arc length, speed along the path, half length) of every agent
    occupying the corridor at some time in [k, k + its lead window]."""
    obstacle_s, obstacle_speed, occupied, crossing = occupancy
    lead_steps = np.round(np.where(crossing, config.crossing_lead_s, config.occupancy_lead_s) / config.rollout_dt_s)
    half_lengths = np.array([a.length_m / 2 for a in agents])
    rows, columns = np.nonzero(occupied)
    candidates = []
    for k in range(steps):
        selected = (columns >= k) & (columns <= k + lead_steps[rows]) if len(rows) else np.zeros(0, dtype=bool)
        a, t = rows[selected], columns[selected]
        candidates.append((obstacle_s[a, t], obstacle_speed[a, t], half_lengths[a] if len(a) else np.zeros(0)))
    return candidates


def _occupancy(
    path: LanePath,
    predictions: np.ndarray,
    agents: list[AgentState],
    config: ExpertConfig,
    merging: np.ndarray | None = None,
):
    """For predicted agent poses (A, T, 3): arc length on the path, speed along it, whether
    the agent's box overlaps the corridor (ego width + clearance; more for ``merging``
    agents) at each time (all (A, T)), and whether the agent crosses the corridor rather
    than drives along it (A,)."""
    if len(agents) == 0:
        empty = np.zeros((0, predictions.shape[1] if predictions.ndim == 3 else 0))
        return empty, empty, empty.astype(bool), np.zeros(0, dtype=bool)
    arc_length, distance = path.project(predictions[..., :2])
    path_heading = path.pose_at(arc_length)[..., 2]
    relative_heading = wrap_angle(predictions[..., 2] - path_heading)
    lengths = np.array([a.length_m for a in agents])[:, None]
    widths = np.array([a.width_m for a in agents])[:, None]
    half_extent_lateral = 0.5 * (widths * np.abs(np.cos(relative_heading)) + lengths * np.abs(np.sin(relative_heading)))
    reach = config.lateral_clearance_m + (config.merge_reach_m * merging[:, None] if merging is not None else 0.0)
    occupied = distance < EGO_WIDTH_M / 2 + half_extent_lateral + reach
    # Off the end of the path the projection saturates; those are not on the corridor.
    occupied &= arc_length < path.length_m - 1e-6
    speeds = np.array([a.speed_mps for a in agents])[:, None]
    along_speed = speeds * np.cos(relative_heading)
    crossing = np.any(occupied & (np.abs(np.cos(relative_heading)) < np.cos(np.radians(45.0))), axis=1)
    return arc_length, along_speed, occupied, crossing
