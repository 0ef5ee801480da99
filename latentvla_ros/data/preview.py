"""Pictures of a bag for a person to check by eye.

- :func:`render_bag_preview`: a few camera frames with the future trajectory
  (from odometry, as the dataset derives it) projected through the bag's own
  CameraInfo and base_link -> camera transform, each beside a BEV.
- :func:`render_drive_overview`: the whole driven path over the road map.

The BEV and the map need the road: bags recorded in the simulator carry the
episode description, from which the road is rebuilt; other bags get the
trajectory on a plain background.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from latentvla_ros import topics
from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.data.bag_io import BagError, bag_topics, read_messages
from latentvla_ros.data.dataset_builder import DatasetConfig, build_log_samples
from latentvla_ros.ros import conversions
from latentvla_ros.simulation.bev import BevConfig, BevRenderer
from latentvla_ros.simulation.map_raster import rasterize_road
from latentvla_ros.simulation.scenarios import build_road_network

TRAJECTORY_RGB = (40, 220, 60)
PANEL_HEIGHT_PX = 256


@dataclass(frozen=True)
class CameraModel:
    """K (3, 3) and base_link -> optical frame (4, 4) read from a bag."""

    intrinsics: np.ndarray
    base_from_camera: np.ndarray

    def project(self, points_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) base_link points -> (N, 2) pixels, (N,) depth."""
        camera_from_base = np.linalg.inv(self.base_from_camera)
        optical = points_base @ camera_from_base[:3, :3].T + camera_from_base[:3, 3]
        depth = optical[:, 2]
        pixels = optical @ self.intrinsics.T
        return pixels[:, :2] / np.maximum(depth, 1e-6)[:, None], depth


def read_camera_model(bag: Path, camera_info_topic: str = topics.CAMERA_INFO) -> CameraModel:
    info = next((m.message for m in read_messages(bag, [camera_info_topic])), None)
    if info is None:
        raise BagError(f"{bag}: {camera_info_topic} has no messages")
    transform = None
    if topics.TF_STATIC in bag_topics(bag):
        for item in read_messages(bag, [topics.TF_STATIC]):
            for candidate in item.message.transforms:
                if candidate.child_frame_id == info.header.frame_id:
                    transform = conversions.transform_to_matrix(candidate)
    if transform is None:
        raise BagError(f"{bag}: no /tf_static transform to the camera frame '{info.header.frame_id}'")
    return CameraModel(conversions.intrinsics_from_camera_info(info), transform)


def read_episodes(bag: Path) -> list[tuple[int, dict]]:
    """(stamp_ns, description) of every simulator episode in the bag (empty for real logs)."""
    if topics.EPISODE not in bag_topics(bag):
        return []
    return [(item.stamp_ns, json.loads(item.message.data)) for item in read_messages(bag, [topics.EPISODE])]


def draw_trajectory_on_frame(frame: np.ndarray, camera: CameraModel, trajectory: np.ndarray) -> np.ndarray:
    """The trajectory poses (N, 3, ego frame) as a line on the ground in the camera image."""
    image = frame.copy()
    points = np.column_stack([np.vstack([[0.0, 0.0], trajectory[:, :2]]), np.zeros(len(trajectory) + 1)])
    dense = np.concatenate([np.linspace(a, b, 10, endpoint=False) for a, b in itertools.pairwise(points)])
    pixels, depth = camera.project(dense)
    visible = depth > 1.0
    for (u0, v0), (u1, v1), ok0, ok1 in zip(pixels[:-1], pixels[1:], visible[:-1], visible[1:], strict=True):
        if ok0 and ok1:
            cv2.line(image, (round(u0), round(v0)), (round(u1), round(v1)), TRAJECTORY_RGB, 2, cv2.LINE_AA)
    pose_pixels, pose_depth = camera.project(points[1:])
    for (u, v), d in zip(pose_pixels, pose_depth, strict=True):
        if d > 1.0:
            cv2.circle(image, (round(u), round(v)), 3, (255, 255, 255), -1, cv2.LINE_AA)
    return image


def bev_picture(bev_channels: np.ndarray | None, trajectory: np.ndarray, config: BevConfig) -> np.ndarray:
    """RGB BEV (road gray, markings white, vehicles red, ego blue) with the trajectory in green."""
    size = config.size_px
    image = np.zeros((size, size, 3), dtype=np.uint8)
    if bev_channels is not None:
        image[bev_channels[0] > 0] = (80, 80, 80)
        image[bev_channels[1] > 0] = (230, 230, 230)
        image[bev_channels[2] > 0] = (230, 60, 60)
    ego = config.ego_to_pixels(np.array([[2.5, 1.0], [-2.5, 1.0], [-2.5, -1.0], [2.5, -1.0]]))
    cv2.fillConvexPoly(image, np.round(ego).astype(np.int32), (60, 120, 255))
    path = config.ego_to_pixels(np.vstack([[0.0, 0.0], trajectory[:, :2]]))
    cv2.polylines(image, [np.round(path).astype(np.int32)], False, TRAJECTORY_RGB, 1, cv2.LINE_AA)
    return image


def _label(image: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(image, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _ground_truth_agents(bag: Path) -> dict[int, list]:
    if topics.GROUND_TRUTH_AGENTS not in bag_topics(bag):
        return {}
    return {
        conversions.time_to_ns(item.message.header.stamp): conversions.agents_from_msg(item.message)
        for item in read_messages(bag, [topics.GROUND_TRUTH_AGENTS])
    }


def render_bag_preview(bag: Path, out_png: Path, frame_count: int = 4, config: DatasetConfig | None = None) -> Path:
    """A grid of ``frame_count`` rows: camera frame with future trajectory | BEV."""
    config = config or DatasetConfig()
    frames, samples, _meta = build_log_samples(bag, config)
    try:
        camera = read_camera_model(bag)
    except BagError:
        camera = None  # no calibration in this bag: frames without the projected trajectory
    episodes = read_episodes(bag)
    bev_config = BevConfig()
    bev_renderer = None
    if episodes:
        network = build_road_network(episodes[0][1]["scenario"]["name"])
        bev_renderer = BevRenderer(bev_config, rasterize_road(network))
    agents_at = _ground_truth_agents(bag) if bev_renderer else {}
    odometry = {
        conversions.time_to_ns(item.message.header.stamp): conversions.odometry_to_ego_state(
            item.message, config.odometry_frame_id, config.odometry_child_frame_id
        ).pose
        for item in read_messages(bag, [config.odometry_topic])
    }
    chosen = (
        np.linspace(0, len(samples["stamps_ns"]) - 1, min(frame_count, len(samples["stamps_ns"]))).round().astype(int)
    )
    rows = []
    for sample in chosen:
        stamp = int(samples["stamps_ns"][sample])
        trajectory = samples["trajectory"][sample]
        frame = frames[samples["frame_indices"][sample][-1]]
        camera_view = draw_trajectory_on_frame(frame, camera, trajectory) if camera is not None else frame.copy()
        scale = PANEL_HEIGHT_PX / camera_view.shape[0]
        camera_view = cv2.resize(camera_view, (round(camera_view.shape[1] * scale), PANEL_HEIGHT_PX))
        command = DrivingCommand(int(samples["command"][sample])).name.lower()
        _label(camera_view, f"t={stamp * 1e-9:.1f}s  v={samples['ego_status'][sample][0]:.1f}m/s  {command}")
        channels = None
        if bev_renderer is not None and stamp in odometry:
            channels = bev_renderer.render(odometry[stamp], agents_at.get(stamp, []))
        bev = cv2.resize(
            bev_picture(channels, trajectory, bev_config),
            (PANEL_HEIGHT_PX, PANEL_HEIGHT_PX),
            interpolation=cv2.INTER_NEAREST,
        )
        rows.append(np.hstack([camera_view, bev]))
    grid = np.vstack(rows)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out_png


def draw_road_map(axis, scenario_name: str) -> None:
    """The scenario's road raster on a matplotlib axis in map metres."""
    raster = rasterize_road(build_road_network(scenario_name)).downsampled(5)
    grid = raster.grid
    extent = [
        grid.x_min_m,
        grid.x_min_m + grid.width_px * grid.resolution_m,
        grid.y_max_m - grid.height_px * grid.resolution_m,
        grid.y_max_m,
    ]
    axis.imshow(raster.color, extent=extent, origin="upper")


def render_drive_overview(bag: Path, out_png: Path, frame_count: int = 4, config: DatasetConfig | None = None) -> Path:
    """The driven path over the road map (per episode, colour by episode) and a strip of frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = config or DatasetConfig()
    poses = np.array(
        [
            conversions.odometry_to_ego_state(
                item.message, config.odometry_frame_id, config.odometry_child_frame_id
            ).pose
            for item in read_messages(bag, [config.odometry_topic])
        ]
    )
    episodes = read_episodes(bag)
    frames = []
    camera_topic = config.camera_topic if config.camera_topic in bag_topics(bag) else topics.CAMERA_IMAGE
    decode = (
        conversions.compressed_image_from_msg if camera_topic.endswith("compressed") else conversions.image_from_msg
    )
    messages = list(read_messages(bag, [camera_topic]))
    for index in np.linspace(0, len(messages) - 1, frame_count).round().astype(int):
        frames.append((messages[index].stamp_ns, decode(messages[index].message)))
    figure = plt.figure(figsize=(12, 8), dpi=100)
    axis = figure.add_axes([0.05, 0.32, 0.9, 0.63])
    if episodes:
        draw_road_map(axis, episodes[0][1]["scenario"]["name"])
        axis.set_title(f"{episodes[0][1]['scenario']['name']}: driven path ({len(episodes)} episodes)")
    # A new line wherever the ego jumps (a new episode starts elsewhere).
    jumps = np.flatnonzero(np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1) > 10.0) + 1
    for part in np.split(poses, jumps):
        axis.plot(part[:, 0], part[:, 1], linewidth=2)
        axis.plot(part[0, 0], part[0, 1], "o", color="white", markeredgecolor="black")
    margin = 30.0
    axis.set_xlim(poses[:, 0].min() - margin, poses[:, 0].max() + margin)
    axis.set_ylim(poses[:, 1].min() - margin, poses[:, 1].max() + margin)
    axis.set_aspect("equal")
    axis.set_xlabel("x (m, map)")
    axis.set_ylabel("y (m, map)")
    for number, (stamp, frame) in enumerate(frames):
        frame_axis = figure.add_axes([0.05 + number * 0.9 / len(frames), 0.02, 0.9 / len(frames) - 0.01, 0.25])
        frame_axis.imshow(frame)
        frame_axis.set_title(f"t = {stamp * 1e-9:.1f} s", fontsize=9)
        frame_axis.axis("off")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    plt.close(figure)
    return out_png
