"""A pinhole front camera rendered from the simulator's state.

Ground, lane markings and road edges come from the map raster: the camera
sits at a fixed pose on the ego, so the ground point seen by every pixel is
fixed in the ego frame (flat ground) and each frame is one ``cv2.remap``.
Near rows sample the fine raster, far rows a coarser one, as a mipmap would.
Other vehicles are shaded 3-D boxes, clipped at the near plane and drawn
far to near (painter's algorithm) so nearer ones occlude farther ones.
Deterministic: the same state renders the same image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from latentvla_ros.simulation.agents import AgentState
from latentvla_ros.simulation.map_raster import GRASS_RGB, MapRaster

SKY_TOP_RGB = np.array([110, 150, 210])
SKY_HORIZON_RGB = np.array([200, 215, 230])
HAZE_RGB = np.array([150, 165, 170])
VEHICLE_PALETTE_RGB = (
    (200, 40, 40),
    (40, 90, 200),
    (230, 230, 230),
    (30, 30, 35),
    (220, 170, 30),
    (60, 150, 80),
    (150, 150, 160),
    (120, 60, 150),
)
VEHICLE_HEIGHT_M = 1.5
# Box faces as corner indices (0..3 bottom, 4..7 top, front-left counter-clockwise) and their
# shading: top brightest, sides by orientation.
BOX_FACES = ((4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))
BOX_FACE_SHADES = (1.15, 0.85, 0.7, 0.8, 0.7)
# Rows seeing ground farther than this use the coarse raster.
FAR_GROUND_M = 25.0
COARSE_FACTOR = 4


@dataclass(frozen=True)
class CameraConfig:
    """Intrinsics from a horizontal field of view; mount pose in ``base_link``."""

    width_px: int = 256
    height_px: int = 128
    horizontal_fov_deg: float = 90.0
    mount_x_m: float = 0.5
    mount_height_m: float = 1.5
    pitch_down_deg: float = 3.0
    near_m: float = 0.5
    max_distance_m: float = 150.0
    frame_id: str = "front_camera"

    def __post_init__(self) -> None:
        if self.width_px < 8 or self.height_px < 8:
            raise ValueError(f"camera size: expected at least 8x8 pixels, got {self.width_px}x{self.height_px}")
        if not 10.0 <= self.horizontal_fov_deg <= 170.0:
            raise ValueError(f"horizontal_fov_deg: expected 10..170, got {self.horizontal_fov_deg}")
        if self.mount_height_m <= 0.0:
            raise ValueError(f"mount_height_m: expected > 0, got {self.mount_height_m}")

    @property
    def focal_px(self) -> float:
        return self.width_px / 2.0 / np.tan(np.radians(self.horizontal_fov_deg) / 2.0)

    def intrinsics(self) -> np.ndarray:
        """(3, 3) K with square pixels and the principal point at the image centre."""
        f = self.focal_px
        return np.array([[f, 0.0, self.width_px / 2.0], [0.0, f, self.height_px / 2.0], [0.0, 0.0, 1.0]])

    def optical_to_base(self) -> np.ndarray:
        """(3, 3) rotation of optical axes (x right, y down, z forward) into base_link, pitched down."""
        axes = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        pitch = np.radians(self.pitch_down_deg)
        about_y = np.array([[np.cos(pitch), 0.0, np.sin(pitch)], [0.0, 1.0, 0.0], [-np.sin(pitch), 0.0, np.cos(pitch)]])
        return about_y @ axes

    def project_base_points(self, points_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) points in base_link -> (N, 2) pixels and (N,) depth along the optical axis."""
        optical = (np.asarray(points_base) - [self.mount_x_m, 0.0, self.mount_height_m]) @ self.optical_to_base()
        depth = optical[:, 2]
        safe = np.where(depth > 1e-6, depth, 1e-6)
        pixels = (optical[:, :2] / safe[:, None]) * self.focal_px + [self.width_px / 2.0, self.height_px / 2.0]
        return pixels, depth


class CameraRenderer:
    """Renders (H, W, 3) uint8 RGB frames of one road network."""

    def __init__(self, config: CameraConfig, road_raster: MapRaster) -> None:
        self.config = config
        self.fine = road_raster
        self.coarse = road_raster.downsampled(COARSE_FACTOR)
        self._precompute_rays()

    def _precompute_rays(self) -> None:
        config = self.config
        u, v = np.meshgrid(np.arange(config.width_px) + 0.5, np.arange(config.height_px) + 0.5)
        f = config.focal_px
        rays_optical = np.stack(
            [(u - config.width_px / 2) / f, (v - config.height_px / 2) / f, np.ones_like(u)], axis=-1
        )
        rays_base = rays_optical @ config.optical_to_base().T
        down = rays_base[..., 2] < -1e-6
        t = np.where(down, config.mount_height_m / np.where(down, -rays_base[..., 2], 1.0), np.inf)
        ground_x = config.mount_x_m + t * rays_base[..., 0]
        ground_y = t * rays_base[..., 1]
        distance = np.hypot(ground_x - config.mount_x_m, ground_y)
        ground = down & (distance < config.max_distance_m)
        near = ground & (distance < FAR_GROUND_M)
        # Flat pixel indices and their ground points (ego frame) for near and far pixels.
        self._ground_pixels = [
            (np.flatnonzero(mask), np.column_stack([ground_x[mask], ground_y[mask]])) for mask in (near, ground & ~near)
        ]
        # Sky: a vertical gradient; beyond max_distance the ground fades into haze.
        elevation = np.clip(rays_base[..., 2] / np.linalg.norm(rays_base, axis=-1), 0.0, 1.0)[..., None]
        sky = (SKY_HORIZON_RGB + (SKY_TOP_RGB - SKY_HORIZON_RGB) * np.sqrt(elevation)).astype(np.uint8)
        sky[down] = HAZE_RGB
        self._background = sky

    def render(self, ego_pose: np.ndarray, agents: list[AgentState]) -> np.ndarray:
        """Frame for the ego at ``ego_pose`` (x, y, yaw in the map frame), other vehicles ``agents``."""
        image = self._background.copy()
        flat_image = image.reshape(-1, 3)
        x, y, yaw = ego_pose
        rotation = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
        for raster, (indices, ground_ego) in zip((self.fine, self.coarse), self._ground_pixels, strict=True):
            if len(indices) == 0:
                continue
            pixels = raster.grid.to_pixels(ground_ego @ rotation + [x, y]).astype(np.float32)
            sampled = cv2.remap(
                raster.color,
                pixels[None, :, 0],
                pixels[None, :, 1],
                interpolation=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=GRASS_RGB,
            )
            flat_image[indices] = sampled[0]
        self._draw_vehicles(image, np.asarray(ego_pose, dtype=np.float64), agents)
        return image

    def _draw_vehicles(self, image: np.ndarray, ego_pose: np.ndarray, agents: list[AgentState]) -> None:
        config = self.config
        if not agents:
            return
        cos_yaw, sin_yaw = np.cos(ego_pose[2]), np.sin(ego_pose[2])
        boxes = []
        for agent in agents:
            corners = agent.corners() - ego_pose[:2]
            corners_base = np.column_stack(
                [cos_yaw * corners[:, 0] + sin_yaw * corners[:, 1], -sin_yaw * corners[:, 0] + cos_yaw * corners[:, 1]]
            )
            centre = corners_base.mean(axis=0)
            distance = float(np.hypot(*centre))
            if distance > config.max_distance_m or centre[0] < -agent.length_m - 5.0:
                continue
            boxes.append((distance, agent, corners_base))
        for _distance, agent, footprint in sorted(boxes, key=lambda box: -box[0]):
            self._draw_box(image, footprint, VEHICLE_PALETTE_RGB[agent.agent_id % len(VEHICLE_PALETTE_RGB)])

    def _draw_box(self, image: np.ndarray, footprint_base: np.ndarray, rgb: tuple[int, int, int]) -> None:
        config = self.config
        bottom = np.column_stack([footprint_base, np.zeros(4)])
        top = np.column_stack([footprint_base, np.full(4, VEHICLE_HEIGHT_M)])
        corners = np.vstack([bottom, top])  # 0..3 bottom (front-left CCW), 4..7 top
        pixels, depth = config.project_base_points(corners)
        in_front = depth >= config.near_m
        if not in_front.any():
            return
        camera_origin = np.array([config.mount_x_m, 0.0, config.mount_height_m])
        centre = corners.mean(axis=0)
        for face, shade in zip(BOX_FACES, BOX_FACE_SHADES, strict=True):
            polygon = corners[list(face)]
            face_centre = polygon.mean(axis=0)
            if np.dot(face_centre - centre, camera_origin - face_centre) <= 0.0:
                continue  # faces away from the camera
            if in_front[list(face)].all():
                face_pixels = pixels[list(face)]
            else:  # crosses the near plane: clip, then project the clipped polygon
                clipped = self._clip_near(polygon)
                if len(clipped) < 3:
                    continue
                face_pixels, _ = config.project_base_points(clipped)
            color = tuple(int(min(255, c * shade)) for c in rgb)
            cv2.fillConvexPoly(image, np.round(face_pixels * 16).astype(np.int32), color, cv2.LINE_AA, shift=4)

    def _clip_near(self, polygon_base: np.ndarray) -> np.ndarray:
        """Sutherland-Hodgman clip of a polygon (N, 3) in base_link against the near plane."""
        config = self.config
        optical = (polygon_base - [config.mount_x_m, 0.0, config.mount_height_m]) @ config.optical_to_base()
        depth = optical[:, 2] - config.near_m
        kept = []
        for i in range(len(polygon_base)):
            j = (i + 1) % len(polygon_base)
            if depth[i] >= 0.0:
                kept.append(polygon_base[i])
            if (depth[i] >= 0.0) != (depth[j] >= 0.0):
                fraction = depth[i] / (depth[i] - depth[j])
                kept.append(polygon_base[i] + fraction * (polygon_base[j] - polygon_base[i]))
        return np.array(kept) if kept else np.zeros((0, 3))
