"""Training samples from any rosbag2: camera, odometry and (optionally) a driving command.

No labels beyond the vehicle's own odometry. For every camera frame that has
enough continuous odometry around it, a sample holds:

- the frame history: ``history_frames`` camera frames ``history_interval_s`` apart,
  the newest at the sample's stamp;
- the ego status at the stamp (vx, vy, ax, ay, yaw rate; body frame; acceleration
  differenced from past odometry velocities only, as a node on the car sees it) and
  the ego's past poses;
- the driving command: the latest command message, or, if the bag has none,
  derived from where the odometry goes next (``derive_command``);
- the future trajectory: ``future_poses`` poses ``future_interval_s`` apart in
  the ego frame at the stamp (NAVSIM: 8 x 0.5 s), interpolated from odometry.

Odometry is cut into continuous *segments*: a gap longer than
``max_gap_s`` (default: the 4 s horizon) or a jump the speed cannot explain
(a teleport, e.g. a new simulator episode) ends a segment; shorter gaps are
interpolated linearly. A sample never spans two segments.

Each log is cached as a directory (``frames.npy``, ``samples.npz``,
``meta.json``) written under a temporary name and renamed when complete, so
an error never leaves a half-written cache. Train/val split is by log.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from latentvla_ros import topics
from latentvla_ros.core.driving_command import DrivingCommand, command_from_heading_change
from latentvla_ros.core.se2 import relative_poses, wrap_angle
from latentvla_ros.core.validation import InputError
from latentvla_ros.data.bag_io import BagError, bag_topics, camera_topic_in, read_messages, require_topic_types
from latentvla_ros.data.cache import CACHE_VERSION
from latentvla_ros.ros import conversions


@dataclass(frozen=True)
class DatasetConfig:
    """Topic names and sampling; every default follows NAVSIM where it has one."""

    camera_topic: str = topics.CAMERA_IMAGE_COMPRESSED
    odometry_topic: str = topics.ODOMETRY
    command_topic: str = topics.DRIVING_COMMAND  # optional in the bag
    perturbation_topic: str = topics.PERTURBATION  # optional: injected disturbances while logging
    agents_topic: str = topics.GROUND_TRUTH_AGENTS  # optional: other agents (simulation ground truth)
    episode_topic: str = topics.EPISODE  # optional: the simulator's scenario (its road makes the BEV raster)
    odometry_frame_id: str = "map"
    odometry_child_frame_id: str = "base_link"
    frame_size: tuple[int, int] | None = None  # (width, height) to resize to; None keeps the bag's
    history_frames: int = 4
    history_interval_s: float = 0.5
    future_poses: int = 8
    future_interval_s: float = 0.5
    sample_stride: int = 1
    max_gap_s: float = 4.0
    teleport_margin_m: float = 5.0
    frame_match_tolerance_s: float = 0.06
    command_lookahead_s: float = 8.0
    val_fraction: float = 0.2
    # "In the camera's view" for the agents' motion labels (evaluation only): ahead, within range and FOV.
    agents_view_range_m: float = 60.0
    agents_view_half_angle_rad: float = 0.8
    # The planner's auxiliary BEV target (simulated logs only): bev_size_px cells of bev_resolution_m.
    bev_size_px: int = 32
    bev_resolution_m: float = 2.0

    def __post_init__(self) -> None:
        for name in ("history_frames", "future_poses", "sample_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("history_interval_s", "future_interval_s", "max_gap_s"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")

    @property
    def history_s(self) -> float:
        return (self.history_frames - 1) * self.history_interval_s

    @property
    def horizon_s(self) -> float:
        return self.future_poses * self.future_interval_s


@dataclass
class OdometryTrack:
    """Odometry as arrays, sorted by time: stamps (N,) ns; poses (N, 3); velocity (N, 2); yaw rate (N,)."""

    stamps_ns: np.ndarray
    poses: np.ndarray
    velocity: np.ndarray
    yaw_rate: np.ndarray
    segment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def __post_init__(self) -> None:
        # Interpolation runs once per sample: prepare what does not depend on the query.
        self._stamps = self.stamps_ns.astype(np.float64)
        self._yaw = np.unwrap(self.poses[:, 2])

    def split_segments(self, max_gap_s: float, teleport_margin_m: float) -> None:
        """Label continuous stretches: a new segment after a long gap or an unexplained jump."""
        dt = np.diff(self.stamps_ns) * 1e-9
        step = np.linalg.norm(np.diff(self.poses[:, :2], axis=0), axis=1)
        speed = np.maximum(np.linalg.norm(self.velocity[:-1], axis=1), np.linalg.norm(self.velocity[1:], axis=1))
        breaks = (dt > max_gap_s) | (step > speed * dt + teleport_margin_m)
        self.segment = np.concatenate([[0], np.cumsum(breaks)])

    def interpolate(self, times_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Poses (..., 3), velocities (..., 2), yaw rates (...) and segment ids (...) at ``times_ns``;
        segment -1 where a time falls outside one continuous segment."""
        times = np.asarray(times_ns, dtype=np.float64)
        t = self._stamps
        right = np.clip(np.searchsorted(t, times, side="left"), 1, len(t) - 1)
        left = right - 1
        exact_left = times == t[left]
        span = t[right] - t[left]
        fraction = np.where(span > 0, (times - t[left]) / np.where(span > 0, span, 1.0), 0.0)
        inside = (times >= t[0]) & (times <= t[-1]) & (self.segment[left] == self.segment[right])
        inside |= exact_left & (times >= t[0])
        yaw = self._yaw
        pose = np.stack(
            [
                self.poses[left, 0] + fraction * (self.poses[right, 0] - self.poses[left, 0]),
                self.poses[left, 1] + fraction * (self.poses[right, 1] - self.poses[left, 1]),
                wrap_angle(yaw[left] + fraction * (yaw[right] - yaw[left])),
            ],
            axis=-1,
        )
        velocity = self.velocity[left] + fraction[..., None] * (self.velocity[right] - self.velocity[left])
        yaw_rate = self.yaw_rate[left] + fraction * (self.yaw_rate[right] - self.yaw_rate[left])
        segment = np.where(inside, self.segment[np.where(fraction > 0.5, right, left)], -1)
        return pose, velocity, yaw_rate, segment


def derive_command(track: OdometryTrack, time_ns: int, lookahead_s: float) -> DrivingCommand:
    """Left / straight / right from the heading change over the next ``lookahead_s``
    (for bags without a command topic); UNKNOWN where the segment ends sooner."""
    times = np.array([time_ns, time_ns + int(lookahead_s * 1e9)])
    poses, _, _, segment = track.interpolate(times)
    if segment[0] < 0 or segment[0] != segment[1]:
        return DrivingCommand.UNKNOWN
    return command_from_heading_change(float(wrap_angle(poses[1, 2] - poses[0, 2])))


def _read_log(bag: Path, config: DatasetConfig):
    """Odometry track, camera frames and stamps, command messages of one bag."""
    available = bag_topics(bag)
    camera_topic = camera_topic_in(available, config.camera_topic)
    wanted = [camera_topic, config.odometry_topic]
    optional = [
        t
        for t in (config.command_topic, config.perturbation_topic, config.agents_topic, config.episode_topic)
        if t in available
    ]
    wanted += optional
    expected = {
        camera_topic: ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
        config.odometry_topic: ("nav_msgs/msg/Odometry",),
        config.command_topic: ("latentvla_ros/msg/DrivingCommand",),
        config.perturbation_topic: ("latentvla_ros/msg/Perturbation",),
        config.agents_topic: ("latentvla_ros/msg/GroundTruthAgents",),
        config.episode_topic: ("std_msgs/msg/String",),
    }
    require_topic_types(bag, available, {topic: expected[topic] for topic in wanted})
    stamps, poses, velocities, yaw_rates = [], [], [], []
    frames, frame_stamps, commands = [], [], []
    perturbations, agents_by_stamp, scenario_names = [], {}, set()
    for item in read_messages(bag, wanted):
        try:
            if item.topic == config.odometry_topic:
                ego = conversions.odometry_to_ego_state(
                    item.message, config.odometry_frame_id, config.odometry_child_frame_id
                )
                if stamps and ego.stamp_ns == stamps[-1]:
                    continue  # a republished state (e.g. while a simulator waits for subscribers)
                stamps.append(ego.stamp_ns)
                poses.append(ego.pose)
                velocities.append([ego.velocity_x_mps, ego.velocity_y_mps])
                yaw_rates.append(ego.yaw_rate_rps)
            elif item.topic == camera_topic:
                if frame_stamps and conversions.time_to_ns(item.message.header.stamp) == frame_stamps[-1]:
                    continue
                if item.type_name.endswith("CompressedImage"):
                    frame = conversions.compressed_image_from_msg(item.message)
                else:
                    frame = conversions.image_from_msg(item.message)
                if config.frame_size is not None and (frame.shape[1], frame.shape[0]) != tuple(config.frame_size):
                    frame = cv2.resize(frame, tuple(config.frame_size), interpolation=cv2.INTER_AREA)
                if frames and frame.shape != frames[0].shape:
                    raise InputError(
                        f"{camera_topic} frame size", f"{frames[0].shape} like the first frame", frame.shape
                    )
                frames.append(frame)
                frame_stamps.append(conversions.time_to_ns(item.message.header.stamp))
            elif item.topic == config.perturbation_topic:
                perturbations.append(conversions.perturbation_from_msg(item.message))
            elif item.topic == config.agents_topic:
                agents = conversions.agents_from_msg(item.message, config.odometry_frame_id)
                agents_by_stamp[conversions.time_to_ns(item.message.header.stamp)] = agents
            elif item.topic == config.episode_topic:
                scenario_names.add(json.loads(item.message.data)["scenario"]["name"])
            else:
                commands.append((conversions.time_to_ns(item.message.header.stamp), int(item.message.command)))
        except InputError as error:
            raise BagError(f"{bag}: {item.topic} at {item.stamp_ns} ns: {error}") from error
    if len(stamps) < 2 or not frames:
        raise BagError(f"{bag}: needs at least 2 odometry messages and 1 frame, has {len(stamps)} and {len(frames)}")
    order = np.argsort(stamps, kind="stable")
    track = OdometryTrack(
        np.asarray(stamps, dtype=np.int64)[order],
        np.asarray(poses)[order],
        np.asarray(velocities)[order],
        np.asarray(yaw_rates)[order],
    )
    track.split_segments(config.max_gap_s, config.teleport_margin_m)
    # One road per log: a BEV raster only for a single-scenario simulated log with ground-truth agents.
    scenario = scenario_names.pop() if len(scenario_names) == 1 else None
    extras = LogExtras(perturbations, agents_by_stamp if config.agents_topic in available else None, scenario)
    return track, np.stack(frames), np.asarray(frame_stamps, dtype=np.int64), commands, camera_topic, extras


@dataclass
class LogExtras:
    """What some bags have beside camera and odometry: injected perturbations (recording's
    marks) and other agents (simulation ground truth, keyed by stamp; None: no such topic)."""

    perturbations: list
    agents_by_stamp: dict | None
    scenario: str | None = None  # the simulator scenario whose road the log drove


def perturbation_marks(perturbations: list, frame_stamps_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the kind of the injection active at its stamp (-1: none), and the
    (P, 3) int64 table of injections (kind, start ns, end ns)."""
    active = np.full(len(frame_stamps_ns), -1, dtype=np.int8)
    table = np.zeros((len(perturbations), 3), dtype=np.int64)
    for row, perturbation in enumerate(perturbations):
        table[row] = (int(perturbation.kind), perturbation.start_ns, perturbation.end_ns)
        inside = (frame_stamps_ns >= perturbation.start_ns) & (frame_stamps_ns < perturbation.end_ns)
        active[inside] = int(perturbation.kind)
    return active, table


def agents_in_view(
    agents_by_stamp: dict,
    frame_stamps_ns: np.ndarray,
    frame_poses: np.ndarray,
    frame_status: np.ndarray,
    config: DatasetConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: how many agents are in the camera's view (-1: no ground truth at that stamp)
    and the nearest one's (x, y, vx, vy) relative to the ego, in the ego frame (NaN: none)."""
    count = np.full(len(frame_stamps_ns), -1, dtype=np.int16)
    nearest = np.full((len(frame_stamps_ns), 4), np.nan, dtype=np.float32)
    for index, stamp in enumerate(frame_stamps_ns):
        agents = agents_by_stamp.get(int(stamp))
        if agents is None:
            continue
        count[index] = 0
        if not agents:
            continue
        poses = np.array([[a.x_m, a.y_m, a.yaw_rad] for a in agents])
        velocities = np.array([[a.speed_mps * np.cos(a.yaw_rad), a.speed_mps * np.sin(a.yaw_rad), 0.0] for a in agents])
        x, y = relative_poses(frame_poses[index], poses)[:, :2].T
        # Velocities only rotate: a pose transform about the origin with the ego's yaw.
        velocity = relative_poses([0.0, 0.0, frame_poses[index, 2]], velocities)[:, :2] - frame_status[index, :2]
        vx, vy = velocity.T
        visible = (x > 0.0) & (np.hypot(x, y) < config.agents_view_range_m)
        visible &= np.abs(np.arctan2(y, x)) < config.agents_view_half_angle_rad
        count[index] = int(visible.sum())
        if visible.any():
            chosen = np.flatnonzero(visible)[np.argmin(np.hypot(x, y)[visible])]
            nearest[index] = (x[chosen], y[chosen], vx[chosen], vy[chosen])
    return count, nearest


def bev_rasters(extras: LogExtras, frame_stamps: np.ndarray, frame_poses: np.ndarray, config: DatasetConfig):
    """(F, 3, S, S) uint8 BEV channels (drivable, markings, vehicles; ``simulation.bev``) per frame
    of a simulated log: the scenario's road around the ego pose plus the ground-truth agents."""
    from latentvla_ros.simulation.bev import BevConfig, BevRenderer  # highway-env: simulated logs only
    from latentvla_ros.simulation.map_raster import rasterize_road
    from latentvla_ros.simulation.scenarios import build_road_network

    bev_config = BevConfig(size_px=config.bev_size_px, resolution_m=config.bev_resolution_m)
    renderer = BevRenderer(bev_config, rasterize_road(build_road_network(extras.scenario)))
    return np.stack(
        [
            renderer.render(pose, extras.agents_by_stamp.get(int(stamp), []))
            for stamp, pose in zip(frame_stamps, frame_poses, strict=True)
        ]
    )


def ego_status_at(
    track: OdometryTrack, stamps_ns: np.ndarray, half_window_s: float = 0.25, causal: bool = False
) -> tuple[np.ndarray, ...]:
    """Poses (N, 3), ego status (N, 5: vx, vy, ax, ay, yaw rate) and segment ids (N,) at ``stamps_ns``.

    Acceleration is the body-frame velocity change over [t - 0.25 s, t + 0.25 s],
    shortened to t itself at a segment's ends (odometry carries no acceleration).
    ``causal``: over [t - 0.25 s, t] only, what a node on the car can know at t.
    """
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    poses, velocity, yaw_rate, segment = track.interpolate(stamps_ns)
    offset = round(half_window_s * 1e9)
    before = track.interpolate(stamps_ns - offset)
    after = track.interpolate(stamps_ns + offset)
    use_before = before[3] == segment
    use_after = (after[3] == segment) & (not causal)
    earlier_pose = np.where(use_before[:, None], before[0], poses)
    earlier_velocity = np.where(use_before[:, None], before[1], velocity)
    later_pose = np.where(use_after[:, None], after[0], poses)
    later_velocity = np.where(use_after[:, None], after[1], velocity)
    span_s = (use_before.astype(float) + use_after.astype(float)) * half_window_s
    heading_change = later_pose[:, 2] - earlier_pose[:, 2]
    cos_h, sin_h = np.cos(heading_change), np.sin(heading_change)
    earlier_in_later = np.column_stack(
        [
            cos_h * earlier_velocity[:, 0] + sin_h * earlier_velocity[:, 1],
            -sin_h * earlier_velocity[:, 0] + cos_h * earlier_velocity[:, 1],
        ]
    )
    acceleration = np.where(
        span_s[:, None] > 0, (later_velocity - earlier_in_later) / np.maximum(span_s, 1e-9)[:, None], 0.0
    )
    status = np.column_stack([velocity, acceleration, yaw_rate])
    return poses, status, segment


def build_log_samples(bag: Path, config: DatasetConfig) -> tuple[np.ndarray, dict, dict]:
    """(frames (F, H, W, 3) uint8, arrays, metadata) of one bag.

    Per frame (``frame_*``): stamp, map-frame pose, ego status and segment (-1: outside
    continuous odometry). Per sample: the frame indices of its history, stamp, ego
    status, past poses, future trajectory, command and segment.
    """
    track, frames, frame_stamps, commands, camera_topic, extras = _read_log(bag, config)
    frame_poses, frame_status, frame_segment = ego_status_at(track, frame_stamps)
    _, frame_status_live, _ = ego_status_at(track, frame_stamps, causal=True)
    frame_perturbation, perturbation_table = perturbation_marks(extras.perturbations, frame_stamps)
    if extras.agents_by_stamp is not None:
        frame_agents, frame_nearest_agent = agents_in_view(
            extras.agents_by_stamp, frame_stamps, frame_poses, frame_status, config
        )
    else:
        frame_agents = np.full(len(frame_stamps), -1, dtype=np.int16)
        frame_nearest_agent = np.full((len(frame_stamps), 4), np.nan, dtype=np.float32)
    command_stamps = np.array([c[0] for c in commands], dtype=np.int64)
    command_values = np.array([c[1] for c in commands], dtype=np.int64)
    history_offsets_ns = np.round(
        -np.arange(config.history_frames - 1, -1, -1) * config.history_interval_s * 1e9
    ).astype(np.int64)
    future_offsets_ns = np.round(np.arange(1, config.future_poses + 1) * config.future_interval_s * 1e9).astype(
        np.int64
    )
    columns: dict[str, list] = {
        key: []
        for key in ("frame_indices", "stamps_ns", "ego_status", "history_poses", "trajectory", "command", "segment")
    }
    for index in range(0, len(frame_stamps), config.sample_stride):
        stamp = int(frame_stamps[index])
        if frame_segment[index] < 0:
            continue
        history_times = stamp + history_offsets_ns
        frame_index = np.clip(np.searchsorted(frame_stamps, history_times), 0, len(frame_stamps) - 1)
        left = np.maximum(frame_index - 1, 0)
        nearer_left = np.abs(frame_stamps[left] - history_times) < np.abs(frame_stamps[frame_index] - history_times)
        frame_index = np.where(nearer_left, left, frame_index)
        if np.any(np.abs(frame_stamps[frame_index] - history_times) > config.frame_match_tolerance_s * 1e9):
            continue  # a history frame is missing
        times = np.concatenate([history_times, stamp + future_offsets_ns])
        poses, _velocity, _yaw_rate, segment = track.interpolate(times)
        if np.any(segment != frame_segment[index]):
            continue  # not all inside one continuous stretch of odometry
        if len(command_stamps):
            latest = np.searchsorted(command_stamps, stamp, side="right") - 1
            command = DrivingCommand(command_values[latest]) if latest >= 0 else DrivingCommand.UNKNOWN
        else:
            command = derive_command(track, stamp, config.command_lookahead_s)
        origin = frame_poses[index]
        columns["frame_indices"].append(frame_index.astype(np.int32))
        columns["stamps_ns"].append(stamp)
        columns["ego_status"].append(frame_status_live[index])  # what the car knows at the stamp
        columns["history_poses"].append(relative_poses(origin, poses[: len(history_times)]))
        columns["trajectory"].append(relative_poses(origin, poses[len(history_times) :]))
        columns["command"].append(int(command))
        columns["segment"].append(int(frame_segment[index]))
    if not columns["stamps_ns"]:
        raise BagError(
            f"{bag}: no sample has {config.history_s:.1f} s of history and {config.horizon_s:.1f} s of future "
            f"inside continuous odometry"
        )
    arrays = {
        "frame_indices": np.stack(columns["frame_indices"]).astype(np.int32),
        "stamps_ns": np.asarray(columns["stamps_ns"], dtype=np.int64),
        "ego_status": np.asarray(columns["ego_status"], dtype=np.float32),
        "history_poses": np.stack(columns["history_poses"]).astype(np.float32),
        "trajectory": np.stack(columns["trajectory"]).astype(np.float64),
        "command": np.asarray(columns["command"], dtype=np.uint8),
        "segment": np.asarray(columns["segment"], dtype=np.int32),
        "frame_stamps_ns": frame_stamps,
        "frame_poses": frame_poses.astype(np.float64),
        "frame_ego_status": frame_status.astype(np.float32),
        "frame_segment": frame_segment.astype(np.int32),
        "frame_perturbation": frame_perturbation,
        "perturbations": perturbation_table,
        "frame_agents_in_view": frame_agents,
        "frame_nearest_agent": frame_nearest_agent,
        "frame_ego_status_live": frame_status_live.astype(np.float32),
    }
    if extras.scenario is not None and extras.agents_by_stamp is not None:
        arrays["frame_bev"] = bev_rasters(extras, frame_stamps, frame_poses, config)
    meta = {
        "cache_version": CACHE_VERSION,
        "bag": str(bag),
        "camera_topic": camera_topic,
        "command_source": "topic" if len(command_stamps) else "derived from odometry",
        "perturbations": len(extras.perturbations),
        "has_agents": extras.agents_by_stamp is not None,
        "frames": len(frames),
        "samples": len(arrays["stamps_ns"]),
        "segments": int(track.segment.max() + 1),
        "frame_shape": list(frames.shape[1:]),
        "config": asdict(config),
    }
    return frames, arrays, meta


def _split_of(log_name: str, val_fraction: float) -> str:
    """Deterministic split by log: the same log is always in the same split."""
    bucket = int(hashlib.sha256(log_name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < val_fraction else "train"


def cache_log(bag: Path, cache_dir: Path, config: DatasetConfig) -> Path:
    """Build one log's samples and write them atomically to ``cache_dir/<log name>``."""
    bag = Path(bag)
    target = Path(cache_dir) / bag.name
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        frames, samples, meta = build_log_samples(bag, config)
        partial.mkdir(parents=True)
        np.save(partial / "frames.npy", frames)
        np.savez(partial / "samples.npz", **samples)
        (partial / "meta.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def find_bags(path: Path) -> list[Path]:
    """A bag directory itself, or every bag directory (with metadata.yaml) below ``path``."""
    path = Path(path)
    if path.suffix in (".mcap", ".db3") and (path.parent / "metadata.yaml").is_file():
        return [path.parent]  # a bag's storage file: the bag is its folder (and names the log)
    if (path / "metadata.yaml").is_file() or path.suffix in (".mcap", ".db3"):
        return [path]
    bags = sorted(p.parent for p in path.rglob("metadata.yaml") if not p.parent.name.endswith(".partial"))
    if not bags:
        raise BagError(f"{path}: no rosbag2 found (a directory with metadata.yaml)")
    return bags


def _one_cv_thread() -> None:
    cv2.setNumThreads(1)  # one core per worker process: the pool itself is the parallelism


def _cache_logs(bags: list[Path], cache_dir: Path, config: DatasetConfig, jobs: int, written: list[Path]) -> None:
    """``cache_log`` for every bag, ``jobs`` logs at a time, appending each finished cache to
    ``written`` in the bags' order (a failure: the caches finished so far are all in it)."""
    if jobs == 1:
        for bag in bags:
            written.append(cache_log(bag, cache_dir, config))
        return
    # spawn: the workers start clean instead of forking a parent that may hold torch's threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_one_cv_thread) as pool:
        futures = [pool.submit(cache_log, bag, cache_dir, config) for bag in bags]
        try:
            for future in futures:
                written.append(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            finished = [f for f in futures if f.done() and not f.cancelled() and f.exception() is None]
            written.extend(target for target in (f.result() for f in finished) if target not in written)
            raise


def build_dataset(
    source: Path,
    cache_dir: Path,
    config: DatasetConfig | None = None,
    val_source: Path | None = None,
    jobs: int = 1,
) -> dict:
    """Cache every bag under ``source`` (and ``val_source``); write ``cache_dir/dataset.json``.

    Splits are by log: every bag under ``val_source`` is held out (e.g. drives of
    another seed); without it, a deterministic hash of each log's name decides.
    ``jobs`` logs are read at a time, each in its own process (one log is one core's work:
    decoding its frames); the cache is the same for any ``jobs``.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    config = config or DatasetConfig()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    held_out = find_bags(val_source) if val_source is not None else []
    bags = find_bags(source) + held_out
    by_name: dict[str, Path] = {}
    for bag in bags:  # a log's cache entry and split go by its name: two logs may not share one
        if bag.name in by_name:
            raise BagError(
                f"two bags are named '{bag.name}' ({by_name[bag.name]} and {bag}): their cache entries would "
                f"collide; rename one"
            )
        by_name[bag.name] = bag
    logs, written = [], []
    try:
        _cache_logs(bags, cache_dir, config, jobs, written)
        for bag, target in zip(bags, written, strict=True):
            meta = json.loads((target / "meta.json").read_text())
            if val_source is not None:
                split = "val" if bag in held_out else "train"
            else:
                split = _split_of(target.name, config.val_fraction)
            logs.append({"name": target.name, "split": split, "samples": meta["samples"]})
    except BaseException:
        for target in written:  # no half-built dataset: per-log caches without a dataset.json
            shutil.rmtree(target, ignore_errors=True)
        raise
    if (
        val_source is None
        and len(logs) > 1
        and all(log["split"] == "train" for log in logs)
        and config.val_fraction > 0
    ):
        logs[-1]["split"] = "val"  # keep at least one held-out log
    index = {"cache_version": CACHE_VERSION, "config": asdict(config), "logs": logs}
    (cache_dir / "dataset.json").write_text(json.dumps(index, indent=2))
    return index
