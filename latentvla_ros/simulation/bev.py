"""A bird's-eye-view raster around the ego: auxiliary training targets and previews.

Ego frame, x forward pointing up in the image, y left pointing left. Channels:
drivable area, lane markings, other vehicles (each 0/1 uint8).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from latentvla_ros.simulation.agents import AgentState
from latentvla_ros.simulation.map_raster import MASK_THRESHOLD, MapRaster

BEV_CHANNELS = ("drivable", "markings", "vehicles")


@dataclass(frozen=True)
class BevConfig:
    """``size_px`` square cells of ``resolution_m``; the ego sits ``ego_row_fraction`` down the image."""

    size_px: int = 128
    resolution_m: float = 0.5
    ego_row_fraction: float = 0.75

    def ego_pixel(self) -> tuple[float, float]:
        return self.size_px / 2.0, self.size_px * self.ego_row_fraction

    def ego_to_pixels(self, points_ego: np.ndarray) -> np.ndarray:
        """(..., 2) ego-frame points -> (..., 2) (column, row) pixels."""
        column0, row0 = self.ego_pixel()
        points_ego = np.asarray(points_ego, dtype=np.float64)
        return np.stack(
            [column0 - points_ego[..., 1] / self.resolution_m, row0 - points_ego[..., 0] / self.resolution_m], axis=-1
        )


class BevRenderer:
    def __init__(self, config: BevConfig, road_raster: MapRaster) -> None:
        self.config = config
        factor = max(1, round(config.resolution_m / road_raster.grid.resolution_m))
        self.raster = road_raster.downsampled(factor) if factor > 1 else road_raster

    def render(self, ego_pose: np.ndarray, agents: list[AgentState]) -> np.ndarray:
        """(3, size, size) uint8 channels (see BEV_CHANNELS) for the ego at ``ego_pose``."""
        config = self.config
        x, y, yaw = ego_pose
        # Affine map BEV pixel -> map raster pixel, composed of: BEV pixel -> ego frame -> map -> raster.
        column0, row0 = config.ego_pixel()
        resolution = config.resolution_m
        cos_yaw, sin_yaw = np.cos(yaw), np.sin(yaw)
        grid = self.raster.grid
        # ego_x = (row0 - r) * res, ego_y = (column0 - c) * res
        # map = (x, y) + R(yaw) @ (ego_x, ego_y); raster column = (map_x - x_min)/g, row = (y_max - map_y)/g
        a = np.array([[0.0, -resolution], [-resolution, 0.0]])  # d(ego_x, ego_y)/d(c, r)
        b = np.array([row0 * resolution, column0 * resolution])
        rotation = np.array([[cos_yaw, -sin_yaw], [sin_yaw, cos_yaw]])
        to_raster = np.array([[1.0 / grid.resolution_m, 0.0], [0.0, -1.0 / grid.resolution_m]])
        linear = to_raster @ rotation @ a
        offset = to_raster @ (rotation @ b + np.array([x, y])) + np.array(
            [-grid.x_min_m / grid.resolution_m, grid.y_max_m / grid.resolution_m]
        )
        matrix = np.column_stack([linear, offset])
        size = (config.size_px, config.size_px)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        drivable = cv2.warpAffine(self.raster.drivable, matrix, size, flags=flags, borderValue=0)
        markings = cv2.warpAffine(self.raster.markings, matrix, size, flags=flags, borderValue=0)
        vehicles = np.zeros(size, dtype=np.uint8)
        cos_e, sin_e = np.cos(-yaw), np.sin(-yaw)
        for agent in agents:
            corners = agent.corners() - [x, y]
            corners_ego = np.column_stack(
                [cos_e * corners[:, 0] - sin_e * corners[:, 1], sin_e * corners[:, 0] + cos_e * corners[:, 1]]
            )
            pixels = config.ego_to_pixels(corners_ego)
            cv2.fillConvexPoly(vehicles, np.round(pixels * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
        # Markings are thin: any trace of paint in a cell marks it; drivable needs half the cell.
        return np.stack([(drivable > MASK_THRESHOLD).astype(np.uint8), (markings > 0).astype(np.uint8), vehicles])
