"""The simulated vehicle's sensors: front camera and BEV raster over a cached road raster."""

from __future__ import annotations

import numpy as np

from latentvla_ros.simulation.bev import BevConfig, BevRenderer
from latentvla_ros.simulation.camera import CameraConfig, CameraRenderer
from latentvla_ros.simulation.map_raster import rasterize_road
from latentvla_ros.simulation.world import DrivingWorld


class SensorSuite:
    """Renders what the ego sees. The road raster is built once per scenario (its road
    network is the same in every episode) and reused."""

    def __init__(self, camera: CameraConfig | None = None, bev: BevConfig | None = None) -> None:
        self.camera_config = camera or CameraConfig()
        self.bev_config = bev or BevConfig()
        self._scenario_name: str | None = None
        self.camera: CameraRenderer | None = None
        self.bev: BevRenderer | None = None
        self.road_raster = None

    def _ensure(self, world: DrivingWorld) -> None:
        if self._scenario_name != world.scenario.name:
            self.road_raster = rasterize_road(world.episode.road.network)
            self.camera = CameraRenderer(self.camera_config, self.road_raster)
            self.bev = BevRenderer(self.bev_config, self.road_raster)
            self._scenario_name = world.scenario.name

    def camera_frame(self, world: DrivingWorld) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the world now."""
        self._ensure(world)
        return self.camera.render(world.ego_state().pose, world.agents())

    def bev_raster(self, world: DrivingWorld) -> np.ndarray:
        """(3, S, S) uint8 BEV channels of the world now."""
        self._ensure(world)
        return self.bev.render(world.ego_state().pose, world.agents())
