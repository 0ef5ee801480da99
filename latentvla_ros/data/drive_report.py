"""What a closed-loop drive recorded in a bag shows: numbers and a picture (``latentvla demo``).

From the bag alone (read with rosbags, no ROS graph): route completion per episode (the
driven odometry projected on the episode's route, as the simulator measures progress),
collisions from the simulator's diagnostics, the planner's modes, and the pipeline
latency (camera stamp to trajectory published) the planner reports. The PNG shows the
driven path and the planned paths over the map, and camera frames with the plan that
was made from them projected onto the road.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from latentvla_ros import topics
from latentvla_ros.core.se2 import wrap_angle
from latentvla_ros.data.bag_io import BagError, bag_topics, read_messages
from latentvla_ros.data.preview import draw_road_map, draw_trajectory_on_frame, read_camera_model, read_episodes
from latentvla_ros.ros import conversions

PIPELINE_LATENCY_TOPIC = "/planner/debug/pipeline_latency_ms"
# Wall-clock compute per frame, as the nodes publish it (under a lock-stepped simulator the
# pipeline latency on the sim clock is 0 by construction: time waits for the plan).
PROCESSING_TIME_TOPICS = {
    "student": "/student/debug/processing_time_ms",
    "planner": "/planner/debug/processing_time_ms",
}
ROUTE_END_MARGIN_M = 5.0  # as the simulator: within this of the route's end counts as done


@dataclass
class DriveReport:
    simulated_s: float = 0.0
    episodes: int = 0
    route_completion: list[float] = field(default_factory=list)
    collisions: int = 0
    at_fault_collisions: int = 0
    off_road_steps: int = 0
    plans: dict[str, int] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    processing_ms: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict:
        latency = np.asarray(self.latency_ms)
        return {
            "simulated_s": round(self.simulated_s, 1),
            "episodes": self.episodes,
            "route_completion_mean": round(float(np.mean(self.route_completion)), 3) if self.route_completion else None,
            "route_completion": [round(c, 3) for c in self.route_completion],
            "collisions": self.collisions,
            "at_fault_collisions": self.at_fault_collisions,
            "off_road_steps": self.off_road_steps,
            "plans_by_mode": self.plans,
            "pipeline_latency_ms_p50": round(float(np.percentile(latency, 50)), 1) if latency.size else None,
            "pipeline_latency_ms_p99": round(float(np.percentile(latency, 99)), 1) if latency.size else None,
            **{
                f"{name}_processing_ms_{q}": round(float(np.percentile(values, int(q[1:]))), 1)
                for name, values in self.processing_ms.items()
                if values
                for q in ("p50", "p99")
            },
        }


def read_odometry(bag: Path, topic: str = topics.ODOMETRY, frames: tuple[str, str] = ("map", "base_link")):
    stamps, poses = [], []
    for item in read_messages(bag, [topic]):
        ego = conversions.odometry_to_ego_state(item.message, *frames)
        stamps.append(ego.stamp_ns)
        poses.append(ego.pose)
    return np.asarray(stamps, dtype=np.int64), np.asarray(poses)


def route_completion(bag: Path, stamps: np.ndarray, poses: np.ndarray) -> list[float]:
    """Per episode: the farthest progress along its route over the route's length (1 at its end)."""
    from latentvla_ros.simulation.route import build_lane_path
    from latentvla_ros.simulation.scenarios import build_road_network

    episodes = read_episodes(bag)
    completion = []
    networks: dict[str, object] = {}
    for number, (start_ns, description) in enumerate(episodes):
        end_ns = episodes[number + 1][0] if number + 1 < len(episodes) else np.iinfo(np.int64).max
        inside = (stamps >= start_ns) & (stamps < end_ns)
        if not inside.any():
            continue
        name = description["scenario"]["name"]
        network = networks.setdefault(name, build_road_network(name))
        path = build_lane_path(network, [tuple(lane) for lane in description["route"]])
        progress = max(path.project(pose[:2])[0] for pose in poses[inside])
        done = progress >= path.length_m - ROUTE_END_MARGIN_M
        completion.append(1.0 if done else float(progress / path.length_m))
    return completion


def drive_report(bag: Path) -> DriveReport:
    report = DriveReport()
    available = bag_topics(bag)
    stamps, poses = read_odometry(bag)
    if len(stamps):
        report.simulated_s = (stamps[-1] - stamps[0]) * 1e-9
    report.episodes = len(read_episodes(bag))
    report.route_completion = route_completion(bag, stamps, poses) if report.episodes else []
    for item in read_messages(bag, [topics.TRAJECTORY]):
        name = conversions.PLAN_MODE_NAMES.get(int(item.message.mode), str(item.message.mode))
        report.plans[name] = report.plans.get(name, 0) + 1
    if "/diagnostics" in available:
        for item in read_messages(bag, ["/diagnostics"]):
            for status in item.message.status:
                if status.name.startswith("simulator"):
                    values = {kv.key: kv.value for kv in status.values}
                    report.collisions = int(values.get("collisions", report.collisions))
                    report.at_fault_collisions = int(values.get("at_fault_collisions", report.at_fault_collisions))
                    report.off_road_steps = int(values.get("off_road_steps", report.off_road_steps))
    if PIPELINE_LATENCY_TOPIC in available:
        report.latency_ms = [float(item.message.data) for item in read_messages(bag, [PIPELINE_LATENCY_TOPIC])]
    for name, topic in PROCESSING_TIME_TOPICS.items():
        if topic in available:
            report.processing_ms[name] = [float(item.message.data) for item in read_messages(bag, [topic])]
    return report


def _plans_in_map(bag: Path, stamps: np.ndarray, poses: np.ndarray, every_s: float) -> list[tuple[int, np.ndarray]]:
    """(stamp, (N, 2) map-frame points incl. the start) of a plan every ``every_s`` seconds."""
    plans, last = [], None
    for item in read_messages(bag, [topics.TRAJECTORY]):
        stamp = conversions.time_to_ns(item.message.header.stamp)
        if last is not None and stamp - last < every_s * 1e9:
            continue
        index = int(np.searchsorted(stamps, stamp))
        if index >= len(stamps) or abs(int(stamps[index]) - stamp) > 60_000_000:
            continue
        x, y, yaw = poses[index]
        local = np.array([[0.0, 0.0]] + [[p.pose.position.x, p.pose.position.y] for p in item.message.points])
        rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        plans.append((stamp, local @ rotation.T + [x, y]))
        last = stamp
    return plans


def render_drive(
    bag: Path,
    out_png: Path,
    frame_count: int = 4,
    odometry_topic: str = topics.ODOMETRY,
    camera_topic: str = topics.CAMERA_IMAGE_COMPRESSED,
    frames: tuple[str, str] = ("map", "base_link"),
    frame_stamps: list[int] | None = None,
    title: str | None = None,
) -> Path:
    """Driven path (black) and planned paths (green) over the map (when the bag names its
    scenario); below, camera frames (evenly spread, or at ``frame_stamps``: e.g. the worst
    moments) with the plan made from each projected on the road where the camera is known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamps, poses = read_odometry(bag, odometry_topic, frames)
    episodes = read_episodes(bag)
    figure = plt.figure(figsize=(12, 9), dpi=100)
    axis = figure.add_axes([0.06, 0.34, 0.9, 0.62])
    if episodes:
        draw_road_map(axis, episodes[0][1]["scenario"]["name"])
    jumps = np.flatnonzero(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1) > 10.0) + 1
    for number, part in enumerate(np.split(poses, jumps)):
        axis.plot(part[:, 0], part[:, 1], color="black", linewidth=2, label="driven" if number == 0 else None)
    for number, (_, points) in enumerate(_plans_in_map(bag, stamps, poses, every_s=2.0)):
        axis.plot(
            points[:, 0], points[:, 1], color="limegreen", linewidth=1.2, label="planned" if number == 0 else None
        )
    margin = 30.0
    axis.set_xlim(poses[:, 0].min() - margin, poses[:, 0].max() + margin)
    axis.set_ylim(poses[:, 1].min() - margin, poses[:, 1].max() + margin)
    axis.set_aspect("equal")
    axis.legend(loc="upper right")
    axis.set_title(title or f"closed loop: {len(episodes)} episode(s), {(stamps[-1] - stamps[0]) * 1e-9:.0f} s")
    for number, (stamp, frame) in enumerate(frames_with_plans(bag, frame_count, camera_topic, frame_stamps)):
        frame_axis = figure.add_axes([0.03 + number * 0.94 / frame_count, 0.02, 0.94 / frame_count - 0.01, 0.28])
        frame_axis.imshow(frame)
        frame_axis.set_title(f"t = {stamp * 1e-9:.1f} s", fontsize=9)
        frame_axis.axis("off")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png


def frames_with_plans(
    bag: Path, count: int, camera_topic: str, stamps: list[int] | None = None
) -> list[tuple[int, np.ndarray]]:
    """Camera frames (evenly spread, or those at ``stamps``) with the trajectory planned from
    each drawn on the road (when camera info and its transform are in the bag)."""
    available = bag_topics(bag)
    if camera_topic not in available:
        return []
    try:
        camera = read_camera_model(bag)
    except BagError:
        camera = None  # a bag without calibration: frames without the projection
    plans = {}
    for item in read_messages(bag, [topics.TRAJECTORY]):
        poses = [
            [p.pose.position.x, p.pose.position.y, 2.0 * np.arctan2(p.pose.orientation.z, p.pose.orientation.w)]
            for p in item.message.points
        ]
        plans[conversions.time_to_ns(item.message.header.stamp)] = np.array(poses)
    frames = list(read_messages(bag, [camera_topic]))
    planned = [f for f in frames if conversions.time_to_ns(f.message.header.stamp) in plans]
    if stamps is not None:
        chosen = [f for s in stamps for f in planned if conversions.time_to_ns(f.message.header.stamp) == s][:count]
    else:
        chosen = [planned[i] for i in np.linspace(0, len(planned) - 1, min(count, len(planned))).round().astype(int)]
    pictures = []
    for item in chosen:
        stamp = conversions.time_to_ns(item.message.header.stamp)
        if available[camera_topic][0].endswith("CompressedImage"):
            image = conversions.compressed_image_from_msg(item.message)
        else:
            image = conversions.image_from_msg(item.message)
        trajectory = plans[stamp]
        trajectory[:, 2] = wrap_angle(trajectory[:, 2])
        if camera is not None:
            image = draw_trajectory_on_frame(image, camera, trajectory)
        pictures.append((stamp, cv2.resize(image, None, fx=2, fy=2)))
    return pictures


def write_report_json(report: DriveReport, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.summary(), indent=2))
    return path
