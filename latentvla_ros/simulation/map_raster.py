"""The static road, rasterized once in the map frame: what the camera's ground
and the BEV are sampled from.

Built from highway-env's lane geometry: each lane's surface is drivable, its
side lines are painted by their line type (striped, continuous, none), as
highway-env's own renderer does.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from highway_env.road.lane import LineType

from latentvla_ros.simulation.highway_frames import position_to_ros

ASPHALT_RGB = (96, 96, 100)
MARKING_RGB = (235, 235, 225)
GRASS_RGB = (70, 110, 60)
MARKING_WIDTH_M = 0.15
STRIPE_LENGTH_M = 3.0
STRIPE_PERIOD_M = 8.0
MARGIN_M = 25.0
MASK_ON = 255
# A downsampled drivable cell counts when at least half of it was drivable.
MASK_THRESHOLD = 127


@dataclass(frozen=True)
class RasterGrid:
    """Map frame <-> raster pixels: column = (x - x_min) / res, row = (y_max - y) / res."""

    x_min_m: float
    y_max_m: float
    resolution_m: float
    width_px: int
    height_px: int

    def to_pixels(self, points_xy: np.ndarray) -> np.ndarray:
        """(..., 2) map-frame points -> (..., 2) float pixel coordinates (column, row)."""
        points_xy = np.asarray(points_xy, dtype=np.float64)
        return np.stack(
            [
                (points_xy[..., 0] - self.x_min_m) / self.resolution_m,
                (self.y_max_m - points_xy[..., 1]) / self.resolution_m,
            ],
            axis=-1,
        )

    def scaled(self, factor: int) -> RasterGrid:
        return RasterGrid(
            self.x_min_m,
            self.y_max_m,
            self.resolution_m * factor,
            int(np.ceil(self.width_px / factor)),
            int(np.ceil(self.height_px / factor)),
        )


@dataclass(frozen=True)
class MapRaster:
    """``drivable`` and ``markings`` masks (H, W) uint8 in {0, 255} (area-averaged when
    downsampled: anything above MASK_THRESHOLD counts); ``color`` (H, W, 3) uint8 RGB."""

    grid: RasterGrid
    drivable: np.ndarray
    markings: np.ndarray
    color: np.ndarray

    def downsampled(self, factor: int) -> MapRaster:
        """The same map at ``factor`` times coarser resolution (area-averaged: no aliasing)."""
        grid = self.grid.scaled(factor)
        size = (grid.width_px, grid.height_px)

        def shrink(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

        return MapRaster(grid, shrink(self.drivable), shrink(self.markings), shrink(self.color))

    def is_drivable(self, points_xy: np.ndarray) -> np.ndarray:
        """(...,) bool: map-frame points on the drivable area (outside the raster: not)."""
        pixels = np.floor(self.grid.to_pixels(points_xy)).astype(int)
        inside = (
            (pixels[..., 0] >= 0)
            & (pixels[..., 0] < self.grid.width_px)
            & (pixels[..., 1] >= 0)
            & (pixels[..., 1] < self.grid.height_px)
        )
        result = np.zeros(pixels.shape[:-1], dtype=bool)
        result[inside] = self.drivable[pixels[..., 1][inside], pixels[..., 0][inside]] > MASK_THRESHOLD
        return result


def _lane_side(lane, longitudinal: np.ndarray, side: int) -> np.ndarray:
    """(M, 2) ROS-frame points along one side of a lane (side 0: lateral -w/2, side 1: +w/2)."""
    return position_to_ros(np.array([lane.position(s, (side - 0.5) * lane.width_at(s)) for s in longitudinal]))


def rasterize_road(network, resolution_m: float = 0.1) -> MapRaster:
    """Rasterize every lane of a highway-env road network."""
    lanes = [lane for ends in network.graph.values() for lane_list in ends.values() for lane in lane_list]
    samples = [np.linspace(0.0, lane.length, max(2, int(np.ceil(lane.length / 0.5)) + 1)) for lane in lanes]
    sides = [(_lane_side(lane, s, 0), _lane_side(lane, s, 1)) for lane, s in zip(lanes, samples, strict=True)]
    all_points = np.vstack([np.vstack(pair) for pair in sides])
    x_min, y_min = all_points.min(axis=0) - MARGIN_M
    x_max, y_max = all_points.max(axis=0) + MARGIN_M
    grid = RasterGrid(
        float(x_min),
        float(y_max),
        resolution_m,
        int(np.ceil((x_max - x_min) / resolution_m)),
        int(np.ceil((y_max - y_min) / resolution_m)),
    )
    drivable = np.zeros((grid.height_px, grid.width_px), dtype=np.uint8)
    markings = np.zeros_like(drivable)
    shift = 4  # cv2 fixed-point fractional bits: sub-pixel accurate polygons
    scale = 1 << shift

    def to_cv(points: np.ndarray) -> np.ndarray:
        return np.round(grid.to_pixels(points) * scale).astype(np.int32)

    for left, right in sides:
        polygon = np.vstack([left, right[::-1]])
        cv2.fillPoly(drivable, [to_cv(polygon)], MASK_ON, lineType=cv2.LINE_8, shift=shift)
    thickness = max(1, round(MARKING_WIDTH_M / resolution_m))
    for lane, longitudinal, pair in zip(lanes, samples, sides, strict=True):
        for side in (0, 1):
            line_type = lane.line_types[side]
            if line_type == LineType.NONE:
                continue
            points = pair[side]
            if line_type == LineType.STRIPED:
                phase = np.mod(longitudinal, STRIPE_PERIOD_M) < STRIPE_LENGTH_M
                # Each run of consecutive "paint" samples is one dash.
                edges = np.flatnonzero(np.diff(np.concatenate([[0], phase.astype(int), [0]])))
                polylines = [points[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 2]
            else:
                polylines = [points]
            cv2.polylines(markings, [to_cv(line) for line in polylines], False, MASK_ON, thickness, cv2.LINE_8, shift)
    color = np.empty((grid.height_px, grid.width_px, 3), dtype=np.uint8)
    color[:] = GRASS_RGB
    color[drivable > 0] = ASPHALT_RGB
    color[markings > 0] = MARKING_RGB
    return MapRaster(grid, drivable, markings, color)
