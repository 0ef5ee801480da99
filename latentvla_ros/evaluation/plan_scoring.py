"""Score every planned trajectory in a bag against what the bag shows happened next (ROS-free).

Used by ``latentvla replay`` (plans a graph made from a recorded bag) and by
``latentvla closed-loop`` (plans made while driving). Per plan, at its stamp:

- **ADE / FDE** at 1, 2 and 4 s against the logged odometry over the next 4 s (always;
  the only metric a camera-less odometry bag can give).
- **PDMS** and its sub-scores (``evaluation/pdms.py``) where the bag has the ground-truth
  agents: the agents as logged at the plan's 0.5 s steps (non-reactive), the drivable
  area of the simulator's road when the bag names its scenario (else DAC is left out),
  and for ego progress a reference: the episode's route driven at its cruise speed when
  the bag has the episode (closed loop: the driven future *is* the plan), else the
  logged future path (replay: the progress the log made, as NAVSIM's human reference).

A plan whose 4 s future runs past the end of the log (or over a gap in odometry) is
counted as unscored, never scored against a shorter future.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latentvla_ros import topics
from latentvla_ros.core.se2 import relative_poses, wrap_angle
from latentvla_ros.data.bag_io import BagError, bag_topics, read_messages, require_topic_types
from latentvla_ros.evaluation.pdms import AgentBoxes, pdm_score
from latentvla_ros.evaluation.planner_evaluation import HORIZONS_S

STEPS = 8
INTERVAL_S = 0.5
MAX_ODOMETRY_GAP_S = 0.5  # wider than this between two states: no interpolated truth there
MAX_SPEED_MPS = 70.0  # faster than this between two states is a jump (an episode restart), not driving
AGENT_MATCH_S = 0.06  # the agents message nearest a plan step, within this
SUB_SCORES = ("nc", "dac", "ttc", "ep", "c")


@dataclass(frozen=True)
class ScoringTopics:
    odometry: str = topics.ODOMETRY
    trajectory: str = topics.TRAJECTORY
    agents: str = topics.GROUND_TRUTH_AGENTS
    episode: str = topics.EPISODE
    odometry_frame: str = "map"
    base_frame: str = "base_link"


class OdometryTrack:
    """Logged ego poses (map frame) with interpolation; None across gaps and outside the log."""

    def __init__(self, stamps_ns: np.ndarray, poses: np.ndarray, speeds: np.ndarray) -> None:
        order = np.argsort(stamps_ns, kind="stable")
        self.stamps_ns = np.asarray(stamps_ns, dtype=np.int64)[order]
        self.poses = np.asarray(poses, dtype=np.float64)[order]
        self.speeds = np.asarray(speeds, dtype=np.float64)[order]
        steps = np.linalg.norm(np.diff(self.poses[:, :2], axis=0), axis=1) if len(self.poses) > 1 else np.zeros(0)
        # jumps[i]: states i and i + 1 are not one drive (a teleport: the simulator's next episode).
        self.jumps = steps > MAX_SPEED_MPS * np.diff(self.stamps_ns) * 1e-9 + 1.0

    def pose_at(self, stamp_ns: int) -> np.ndarray | None:
        stamps = self.stamps_ns
        if len(stamps) == 0 or stamp_ns < stamps[0] or stamp_ns > stamps[-1]:
            return None
        after = int(np.searchsorted(stamps, stamp_ns, side="left"))
        if stamps[after] == stamp_ns:
            return self.poses[after].copy()
        before = after - 1
        if (stamps[after] - stamps[before]) * 1e-9 > MAX_ODOMETRY_GAP_S or self.jumps[before]:
            return None
        w = (stamp_ns - stamps[before]) / (stamps[after] - stamps[before])
        a, b = self.poses[before], self.poses[after]
        yaw = a[2] + w * wrap_angle(b[2] - a[2])
        return np.array([a[0] + w * (b[0] - a[0]), a[1] + w * (b[1] - a[1]), wrap_angle(yaw)])

    def future_in_ego(self, stamp_ns: int, steps: int = STEPS, interval_s: float = INTERVAL_S) -> np.ndarray | None:
        """(steps, 3) logged poses at stamp + k * interval, in the ego frame at ``stamp_ns``."""
        origin = self.pose_at(stamp_ns)
        if origin is None:
            return None
        end_ns = stamp_ns + round(steps * interval_s * 1e9)
        first = int(np.searchsorted(self.stamps_ns, stamp_ns, side="right")) - 1
        last = int(np.searchsorted(self.stamps_ns, end_ns, side="left"))
        if self.jumps[max(first, 0) : last].any():
            return None  # the drive restarts within the horizon
        future = [self.pose_at(stamp_ns + round(k * interval_s * 1e9)) for k in range(1, steps + 1)]
        if any(pose is None for pose in future):
            return None
        return relative_poses(origin, np.stack(future))


class AgentLog:
    """Ground-truth agents by stamp; their boxes over a plan's steps, in its ego frame."""

    def __init__(self, stamps_ns: list[int], agents: list[list]) -> None:
        order = np.argsort(stamps_ns, kind="stable")
        self.stamps_ns = np.asarray(stamps_ns, dtype=np.int64)[order]
        self.agents = [agents[i] for i in order]

    def _nearest(self, stamp_ns: int) -> list | None:
        if len(self.stamps_ns) == 0:
            return None
        index = int(np.clip(np.searchsorted(self.stamps_ns, stamp_ns), 1, len(self.stamps_ns) - 1))
        if len(self.stamps_ns) == 1:
            index = 0
        elif abs(self.stamps_ns[index - 1] - stamp_ns) < abs(self.stamps_ns[index] - stamp_ns):
            index -= 1
        if abs(int(self.stamps_ns[index]) - stamp_ns) * 1e-9 > AGENT_MATCH_S:
            return None
        return self.agents[index]

    def boxes(self, stamp_ns: int, origin: np.ndarray) -> AgentBoxes | None:
        """The agents at the plan's steps (as logged: non-reactive); None if not logged then."""
        per_step = [self._nearest(stamp_ns + round(k * INTERVAL_S * 1e9)) for k in range(1, STEPS + 1)]
        if any(step is None for step in per_step):
            return None
        ids = sorted({agent.agent_id for step in per_step for agent in step})
        poses = np.full((len(ids), STEPS, 3), np.nan)
        velocities = np.zeros((len(ids), STEPS, 2))
        sizes = np.zeros((len(ids), 2))
        row = {agent_id: i for i, agent_id in enumerate(ids)}
        cos_yaw, sin_yaw = np.cos(origin[2]), np.sin(origin[2])
        for step, agents in enumerate(per_step):
            for agent in agents:
                i = row[agent.agent_id]
                poses[i, step] = relative_poses(origin, np.array([agent.x_m, agent.y_m, agent.yaw_rad]))
                vx, vy = agent.speed_mps * np.cos(agent.yaw_rad), agent.speed_mps * np.sin(agent.yaw_rad)
                velocities[i, step] = (cos_yaw * vx + sin_yaw * vy, -sin_yaw * vx + cos_yaw * vy)
                sizes[i] = (agent.length_m, agent.width_m)
        return AgentBoxes(poses, velocities, sizes)


@dataclass
class RouteReference:
    """One simulator episode: its road (drivable area) and route driven at cruise speed."""

    start_ns: int
    path: object  # simulation.route.LanePath
    cruise_speed_mps: float
    drivable: object  # simulation.map_raster.MapRaster

    def reference_in_ego(self, origin: np.ndarray) -> np.ndarray:
        start = float(self.path.project(origin[None, :2])[0][0])
        arc = start + self.cruise_speed_mps * INTERVAL_S * np.arange(1, STEPS + 1)
        return relative_poses(origin, self.path.pose_at(arc))

    def is_drivable_in_ego(self, origin: np.ndarray):
        cos_yaw, sin_yaw = np.cos(origin[2]), np.sin(origin[2])

        def is_drivable(points_ego: np.ndarray) -> np.ndarray:
            x, y = points_ego[:, 0], points_ego[:, 1]
            world = np.column_stack([origin[0] + cos_yaw * x - sin_yaw * y, origin[1] + sin_yaw * x + cos_yaw * y])
            return self.drivable.is_drivable(world)

        return is_drivable


def _route_references(bag: Path, topic: str) -> list[RouteReference]:
    from latentvla_ros.simulation.map_raster import rasterize_road  # highway-env: simulated logs only
    from latentvla_ros.simulation.route import build_lane_path
    from latentvla_ros.simulation.scenarios import build_road_network

    references, rasters = [], {}
    for item in read_messages(bag, [topic]):
        description = json.loads(item.message.data)
        name = description["scenario"]["name"]
        network = build_road_network(name)
        if name not in rasters:
            rasters[name] = rasterize_road(network, resolution_m=0.25)
        path = build_lane_path(network, [tuple(lane) for lane in description["route"]])
        references.append(RouteReference(item.stamp_ns, path, float(description["cruise_speed_mps"]), rasters[name]))
    return references


@dataclass
class PlanScores:
    """One row per plan: stamp, mode, ADE/FDE per horizon, the PDMS sub-scores (NaN: not scored)."""

    rows: list[dict] = field(default_factory=list)
    unscored: int = 0  # plans without a full logged future

    def summary(self) -> dict:
        if not self.rows:
            return {"plans": 0, "unscored": self.unscored}
        keys = [k for k in self.rows[0] if k not in ("stamp_ns", "mode")]
        values = {k: np.array([row[k] for row in self.rows], dtype=np.float64) for k in keys}
        result = {"plans": len(self.rows), "unscored": self.unscored}
        for key, column in values.items():
            finite = column[np.isfinite(column)]
            result[key] = round(float(finite.mean()), 4) if finite.size else None
        modes: dict[str, int] = {}
        for row in self.rows:
            modes[row["mode"]] = modes.get(row["mode"], 0) + 1
        result["plans_by_mode"] = modes
        return result


def score_plans(bag: Path, scoring_topics: ScoringTopics = ScoringTopics()) -> PlanScores:
    """Every plan on ``scoring_topics.trajectory`` scored against the rest of the bag."""
    from latentvla_ros.ros import conversions  # rosidl messages: the bag's types

    t = scoring_topics
    available = bag_topics(bag)
    require_topic_types(
        bag,
        available,
        {
            t.odometry: ("nav_msgs/msg/Odometry",),
            t.trajectory: ("latentvla_ros/msg/PlannedTrajectory",),
            t.agents: ("latentvla_ros/msg/GroundTruthAgents",),
            t.episode: ("std_msgs/msg/String",),
        },
    )
    for required in (t.odometry, t.trajectory):
        if required not in available:
            raise BagError(
                f"{bag}: no {required} topic to score plans with; the bag has: {', '.join(sorted(available))}"
            )
    stamps, poses, speeds = [], [], []
    for item in read_messages(bag, [t.odometry]):
        ego = conversions.odometry_to_ego_state(item.message, t.odometry_frame, t.base_frame)
        stamps.append(ego.stamp_ns)
        poses.append(ego.pose)
        speeds.append(ego.speed_mps)
    track = OdometryTrack(np.asarray(stamps), np.asarray(poses).reshape(-1, 3), np.asarray(speeds))
    agents = None
    if t.agents in available:
        agent_stamps, agent_lists = [], []
        for item in read_messages(bag, [t.agents]):
            agent_stamps.append(conversions.time_to_ns(item.message.header.stamp))
            agent_lists.append(conversions.agents_from_msg(item.message, t.odometry_frame))
        agents = AgentLog(agent_stamps, agent_lists)
    references = _route_references(bag, t.episode) if t.episode in available else []

    scores = PlanScores()
    for item in read_messages(bag, [t.trajectory]):
        message = item.message
        stamp_ns = conversions.time_to_ns(message.header.stamp)
        truth = track.future_in_ego(stamp_ns)
        origin = track.pose_at(stamp_ns)
        if truth is None or origin is None:
            scores.unscored += 1
            continue
        plan = conversions.trajectory_from_msg(message, t.base_frame)
        if len(plan.poses_ego_frame) != STEPS or abs(plan.interval_s - INTERVAL_S) > 1e-3:
            scores.unscored += 1  # another horizon than NAVSIM's 8 x 0.5 s: not comparable
            continue
        planned = plan.poses_ego_frame
        distance = np.linalg.norm(planned[:, :2] - truth[:, :2], axis=-1)
        row: dict = {
            "stamp_ns": stamp_ns,
            "mode": conversions.PLAN_MODE_NAMES.get(int(message.mode), str(message.mode)),
        }
        for horizon in HORIZONS_S:
            steps = round(horizon / INTERVAL_S)
            row[f"ade_{horizon:g}s"] = float(distance[:steps].mean())
            row[f"fde_{horizon:g}s"] = float(distance[steps - 1])
        boxes = agents.boxes(stamp_ns, origin) if agents is not None else None
        if boxes is None:
            row.update({name: np.nan for name in (*SUB_SCORES, "pdms")})
        else:
            episode = next((r for r in reversed(references) if r.start_ns <= item.stamp_ns), None)
            reference = episode.reference_in_ego(origin) if episode is not None else truth
            drivable = episode.is_drivable_in_ego(origin) if episode is not None else None
            speed = float(track.speeds[np.searchsorted(track.stamps_ns, stamp_ns, side="right") - 1])
            score = pdm_score(plan, speed, boxes, reference, drivable)
            row.update({"nc": score.nc, "dac": np.nan if score.dac is None else score.dac, "ttc": score.ttc})
            row.update({"ep": score.ep, "c": score.c, "pdms": score.pdms})
        scores.rows.append(row)
    return scores
